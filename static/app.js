// Small enhancements; every page works without them.
"use strict";

// Loaded in <head> without defer so this class is set before the first paint: the
// stylesheet styles file pickers and the like differently when scripts run.
document.documentElement.classList.add("js");

// --- photos chosen for upload: names and previews before the form is sent ---------

function showPreviews(input) {
  const list = document.getElementById(input.dataset.preview);
  if (!list) return;
  for (const img of list.querySelectorAll("img")) URL.revokeObjectURL(img.src);
  list.replaceChildren();
  for (const file of input.files) {
    const item = document.createElement("li");
    if (file.type.startsWith("image/")) {
      const img = document.createElement("img");
      img.src = URL.createObjectURL(file);
      img.alt = "";
      item.append(img);
    }
    const caption = document.createElement("span");
    caption.textContent = file.name;
    item.append(caption);
    list.append(item);
  }
}

document.addEventListener("change", (event) => {
  const input = event.target;
  if (input instanceof HTMLInputElement && input.type === "file" && input.dataset.preview) {
    showPreviews(input);
  }
});

// --- questions before what cannot be undone ---------------------------------------

document.addEventListener("submit", (event) => {
  const form = event.target;
  // A move arrow submits the edit form too; only the form's own data-confirm asks.
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

// --- a new API token: selected when focused, and a Copy button ---------------------

document.addEventListener("focusin", (event) => {
  const input = event.target;
  if (input instanceof HTMLInputElement && "selectOnFocus" in input.dataset) input.select();
});

async function copyField(button) {
  const field = document.getElementById(button.dataset.copy);
  const status = button.closest(".card")?.querySelector("[data-copy-status]");
  try {
    await navigator.clipboard.writeText(field.value);
    if (status) status.textContent = button.dataset.copied;
  } catch {
    // Refused (permissions): leave the text selected to copy by hand.
    field.focus();
    field.select();
  }
}

// --- the menu on narrow screens: closes on Escape, outside clicks and leaving it ---

function closeMenus(except) {
  for (const menu of document.querySelectorAll("details.menu[open]")) {
    if (menu !== except) menu.open = false;
  }
}

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") {
    const open = document.querySelector("details.menu[open]");
    if (open) {
      open.open = false;
      open.querySelector("summary").focus();
    }
  }
});

document.addEventListener("focusout", (event) => {
  const menu = event.target.closest?.("details.menu[open]");
  if (menu && event.relatedTarget && !menu.contains(event.relatedTarget)) menu.open = false;
});

// --- reordering photos on the edit page: the arrows act at once, or drag a photo ---

function renumber(list) {
  const items = [...list.children];
  items.forEach((item, index) => {
    const label = list.dataset.label.replace("{n}", String(index + 1));
    for (const element of item.querySelectorAll("[data-photo-label]")) {
      if (element instanceof HTMLImageElement) element.alt = label;
      else element.textContent = label;
    }
    const number = item.querySelector("[data-photo-number]");
    if (number) number.textContent = String(index + 1);
    const [up, down] = item.querySelectorAll(".move button");
    up.disabled = index === 0;
    down.disabled = index === items.length - 1;
  });
}

function announce(list, item) {
  const status = list.parentElement.querySelector("[data-reorder-status]");
  const position = [...list.children].indexOf(item) + 1;
  if (status) status.textContent = list.dataset.label.replace("{n}", String(position));
}

function move(button) {
  const item = button.closest("li");
  const list = item.parentElement;
  const up = button.value.endsWith(":up");
  const sibling = up ? item.previousElementSibling : item.nextElementSibling;
  if (!sibling) return;
  if (up) list.insertBefore(item, sibling);
  else list.insertBefore(sibling, item);
  renumber(list);
  // Keep the keyboard where it was; at either end the arrow is disabled, so use the other.
  const [upButton, downButton] = item.querySelectorAll(".move button");
  const next = button.disabled ? (up ? downButton : upButton) : button;
  next.focus();
  announce(list, item);
}

document.addEventListener("click", (event) => {
  const target = event.target instanceof Element ? event.target : null;
  const moveButton = target?.closest("[data-reorder] .move button");
  if (moveButton) {
    event.preventDefault();
    move(moveButton);
    return;
  }
  const copyButton = target?.closest("button[data-copy]");
  if (copyButton) {
    copyField(copyButton);
    return;
  }
  const menu = target?.closest("details.menu");
  closeMenus(menu);
});

let dragged = null;

document.addEventListener("dragstart", (event) => {
  const item = event.target instanceof Element ? event.target.closest("[data-reorder] > li") : null;
  if (!item) return;
  dragged = item;
  item.classList.add("dragging");
  event.dataTransfer.effectAllowed = "move";
  event.dataTransfer.setData("text/plain", item.id);
});

document.addEventListener("dragover", (event) => {
  const over = event.target instanceof Element ? event.target.closest("[data-reorder] > li") : null;
  if (!dragged || !over || over.parentElement !== dragged.parentElement) return;
  event.preventDefault();
  if (over === dragged) return;
  const box = over.getBoundingClientRect();
  const after = event.clientY > box.top + box.height / 2;
  over.parentElement.insertBefore(dragged, after ? over.nextElementSibling : over);
  renumber(over.parentElement);
});

document.addEventListener("drop", (event) => {
  if (dragged) event.preventDefault();
});

document.addEventListener("dragend", () => {
  if (!dragged) return;
  dragged.classList.remove("dragging");
  announce(dragged.parentElement, dragged);
  dragged = null;
});

// --- the photo viewer: the arrow keys go to the previous and next photo -------------

document.addEventListener("keydown", (event) => {
  if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
  if (!document.querySelector(".viewer")) return;
  if (event.target instanceof Element && event.target.closest("input, textarea, select")) return;
  const rel = { ArrowLeft: "prev", ArrowRight: "next" }[event.key];
  const link = rel && document.querySelector(`.viewer a[rel="${rel}"]`);
  if (link) link.click();
});

// --- once the page is there --------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  if (navigator.clipboard) {
    for (const button of document.querySelectorAll("button[data-copy]")) button.hidden = false;
  }
  for (const item of document.querySelectorAll("[data-reorder] > li")) item.draggable = true;
});
