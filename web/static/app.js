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
