// Tables whose rows are kept by key, so a once-a-second refresh changes
// only the text that changed (no flicker, no lost focus or selection).

import { h, setText } from "./dom";

export interface Row {
  key: string;
  cells: (string | Node)[];
  cls?: string;
}

/** table builds <div class="table-wrap"><table> with a caption and headers. */
export function table(caption: string, headers: string[], cls = ""): { wrap: HTMLElement; body: HTMLTableSectionElement; empty: HTMLElement } {
  const body = h("tbody");
  const t = h(
    "table",
    { class: cls || null },
    h("caption", null, caption),
    h("thead", null, h("tr", null, ...headers.map((x) => h("th", { scope: "col" }, x)))),
    body,
  );
  const empty = h("p", { class: "empty", hidden: true });
  // Focusable, so a keyboard can scroll it when it is wider than the screen.
  return { wrap: h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption }, t, empty), body, empty };
}

/** syncRows makes body's rows match rows, in order, reusing rows by key. */
export function syncRows(body: HTMLTableSectionElement, headers: string[], rows: Row[]): void {
  const have = new Map<string, HTMLTableRowElement>();
  for (const tr of Array.from(body.rows)) have.set(tr.dataset.key ?? "", tr);
  let prev: HTMLTableRowElement | null = null;
  for (const r of rows) {
    let tr = have.get(r.key);
    if (tr) have.delete(r.key);
    else {
      tr = h("tr", { "data-key": r.key });
      r.cells.forEach((_, i) => tr!.append(h(i === 0 ? "th" : "td", { scope: i === 0 ? "row" : null, "data-label": headers[i] })));
    }
    tr.className = r.cls ?? "";
    r.cells.forEach((c, i) => {
      const cell = tr!.cells[i];
      if (typeof c === "string") setText(cell, c);
      else if (cell.firstChild !== c) cell.replaceChildren(c);
    });
    const want: ChildNode | null = prev ? prev.nextSibling : body.firstChild;
    if (want !== tr) body.insertBefore(tr, want);
    prev = tr;
  }
  for (const tr of have.values()) tr.remove();
}
