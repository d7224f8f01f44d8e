// The console's only script: every page works without it.
document.documentElement.classList.add("js"); // pages may style for scripts being on

// Drag a lineage graph to pan it (the container also scrolls natively, with or without this).
// A drag that moved is not a click, so releasing over a node does not follow its link.
document.querySelectorAll(".graph").forEach((box) => {
  let start = null;
  let moved = false;
  box.addEventListener("mousedown", (e) => {
    start = { x: e.clientX, y: e.clientY, left: box.scrollLeft, top: box.scrollTop };
    moved = false;
  });
  window.addEventListener("mousemove", (e) => {
    if (!start) return;
    const dx = e.clientX - start.x, dy = e.clientY - start.y;
    if (!moved && Math.abs(dx) + Math.abs(dy) < 4) return;
    moved = true;
    box.classList.add("dragging");
    box.scrollLeft = start.left - dx;
    box.scrollTop = start.top - dy;
  });
  window.addEventListener("mouseup", () => { start = null; box.classList.remove("dragging"); });
  box.addEventListener("click", (e) => { if (moved) { e.preventDefault(); moved = false; } }, true);
});
