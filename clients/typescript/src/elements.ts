/**
 * Element ids, typed by the application.
 *
 * `authz policy elements --typescript` writes the union of every UI element id the
 * policies name. Register it once and `<Can element=...>` / `isVisible(...)` accept only
 * those ids, so a misspelled id fails the TypeScript build:
 *
 * ```ts
 * import type { ElementId as PolicyElementId } from "./authz-elements";
 * declare module "@authz/client" {
 *   interface Register { elementId: PolicyElementId }
 * }
 * ```
 */

// Augmented by applications (declaration merging); empty means "any string".
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface Register {}

/** The registered element id union, or `string` when the application registered none. */
export type ElementId = Register extends { elementId: infer E extends string } ? E : string;
