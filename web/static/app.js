// Marks that scripts run, so fields switched off by visible_if are hidden only when htmx can bring them back.
document.documentElement.classList.add("js");

// Link fields (widgets/link.html): a chosen option fills the hidden id and the text box; typing again clears the id,
// so the server then finds the record by what was typed (as it does when scripts do not run).
document.addEventListener("click", (event) => {
  const option = event.target.closest(".link-option");
  if (!option) return;
  const picker = option.closest(".link-picker");
  picker.querySelector(".link-id").value = option.dataset.id;
  const text = picker.querySelector(".link-text");
  text.value = option.dataset.text;
  picker.querySelector(".link-options").replaceChildren();
  text.dispatchEvent(new Event("change", { bubbles: true }));
});
document.addEventListener("input", (event) => {
  if (event.target.classList && event.target.classList.contains("link-text")) {
    event.target.closest(".link-picker").querySelector(".link-id").value = "";
  }
});

// Grid entry (records/grid.html): arrow keys and Enter move between cells; a block pasted from Excel (tab-separated
// rows) fills the cells from the focused one rightwards and downwards. Without JavaScript the grid still saves.
function gridCell(input, rowStep, columnStep) {
  const cell = input.closest("td");
  const row = cell.parentElement;
  const rows = Array.from(row.parentElement.children);
  const column = Array.from(row.children).indexOf(cell) + columnStep;
  const target = rows[rows.indexOf(row) + rowStep];
  const next = target && target.children[column];
  return next ? next.querySelector("input") : null;
}

document.addEventListener("keydown", (event) => {
  const input = event.target;
  if (!(input instanceof HTMLInputElement) || !input.closest("table[data-grid]")) return;
  const moves = {ArrowUp: [-1, 0], ArrowDown: [1, 0], Enter: [1, 0],
                 ArrowLeft: input.selectionStart === 0 ? [0, -1] : null,
                 ArrowRight: input.selectionEnd === input.value.length ? [0, 1] : null};
  const move = moves[event.key];
  if (!move) return;
  const next = gridCell(input, move[0], move[1]);
  event.preventDefault();  // Enter must not submit half a grid
  if (next) { next.focus(); next.select(); }
});

document.addEventListener("paste", (event) => {
  const input = event.target;
  if (!(input instanceof HTMLInputElement) || !input.closest("table[data-grid]")) return;
  const text = (event.clipboardData || window.clipboardData).getData("text");
  if (!text.includes("\t") && !text.includes("\n")) return;
  event.preventDefault();
  const lines = text.replace(/\r/g, "").replace(/\n$/, "").split("\n");
  let rowStart = input;
  lines.forEach((line) => {
    let cell = rowStart;
    line.split("\t").forEach((value) => {
      if (cell) { cell.value = value.trim(); cell = gridCell(cell, 0, 1); }
    });
    rowStart = rowStart ? gridCell(rowStart, 1, 0) : null;
  });
});
