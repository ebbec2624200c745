// Small enhancements; every page works without them.
"use strict";

// Show the chosen photos before the form is sent.
function showPreviews(input) {
  const list = document.getElementById(input.dataset.preview);
  if (!list) return;
  for (const img of list.querySelectorAll("img")) URL.revokeObjectURL(img.src);
  list.replaceChildren();
  for (const file of input.files) {
    if (!file.type.startsWith("image/")) continue;
    const item = document.createElement("li");
    const img = document.createElement("img");
    img.src = URL.createObjectURL(file);
    img.alt = file.name;
    const caption = document.createElement("span");
    caption.textContent = file.name;
    item.append(img, caption);
    list.append(item);
  }
}

document.addEventListener("change", (event) => {
  const input = event.target;
  if (input instanceof HTMLInputElement && input.type === "file" && input.dataset.preview) {
    showPreviews(input);
  }
});

// Ask before actions that cannot be undone.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

// A new API token is selected when focused, ready to copy.
document.addEventListener("focusin", (event) => {
  const input = event.target;
  if (input instanceof HTMLInputElement && "selectOnFocus" in input.dataset) input.select();
});
