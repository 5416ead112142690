// What the orders app can show, keyed by element id. The frontend holds no permission
// names: the policies decide which ids are visible, and the ids are typed from them.

import type { ElementId } from "./authz";

export interface MenuItem {
  element: ElementId;
  label: string;
  href: string;
}

export interface ActionButton {
  element: ElementId;
  label: string;
}

export const MENU: readonly MenuItem[] = [
  { element: "ui:menu.orders", label: "Orders", href: "#/orders" },
  { element: "ui:menu.reports", label: "Reports", href: "#/reports" },
  { element: "ui:menu.admin", label: "Admin", href: "#/admin" },
];

export const ACTIONS: readonly ActionButton[] = [
  { element: "ui:button.create-order", label: "Create order" },
  { element: "ui:button.delete-order", label: "Delete order" },
];
