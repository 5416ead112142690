// Registers the policies' element ids with @authz/client, so `<Can element=...>` and
// `isVisible(...)` accept only ids the policies name.

import type {} from "@authz/client"; // brings the module into the program so it can be augmented
import type { ElementId as PolicyElementId } from "./authz-elements";

declare module "@authz/client" {
  interface Register {
    elementId: PolicyElementId;
  }
}

export type ElementId = PolicyElementId;
