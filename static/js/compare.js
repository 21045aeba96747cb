/* Cleanup review: compare an image before and after cleanup, and decide with the keyboard.
 *
 * Views: a slider (the "before" layer is clipped at the split; drag or click to move it), "before" or "after"
 * alone, and Space to flip between the two, which shows small changes best. M overlays the removal mask, O draws
 * the detected boxes; hovering a box in the list highlights it on the image. A accepts, X rejects (htmx then
 * swaps in the next image to review), arrows go to the previous / next image. The view settings are kept from
 * one image to the next, since the review page swaps its content in place.
 */
(function () {
  "use strict";

  const view = { mode: "slider", split: 50, mask: false, boxes: false };

  function root() {
    return document.querySelector("[data-review]");
  }

  function apply(review) {
    const compare = review.querySelector(".compare");
    if (!compare) return;
    const changed = compare.dataset.changed === "1";
    compare.dataset.mode = changed ? view.mode : "before";
    compare.dataset.mask = changed && view.mask ? "on" : "off";
    compare.dataset.boxes = view.boxes ? "on" : "off";
    compare.style.setProperty("--split", view.split + "%");
    review.querySelectorAll("input[name=view]").forEach(function (input) {
      input.checked = input.value === view.mode;
    });
    const mask = review.querySelector("input[name=mask]");
    if (mask) mask.checked = view.mask;
    const boxes = review.querySelector("input[name=boxes]");
    if (boxes) boxes.checked = view.boxes;
  }

  function setSplitFrom(event, frame) {
    const rect = frame.getBoundingClientRect();
    const x = Math.min(Math.max(event.clientX - rect.left, 0), rect.width);
    view.split = Math.round((1000 * x) / rect.width) / 10;
    view.mode = "slider";
  }

  function init(review) {
    if (!review || review.dataset.ready) return;
    review.dataset.ready = "1";
    apply(review);

    const frame = review.querySelector(".compare-frame");
    if (frame && review.querySelector(".compare").dataset.changed === "1") {
      frame.addEventListener("pointerdown", function (event) {
        if (event.button !== 0) return;
        frame.setPointerCapture(event.pointerId);
        setSplitFrom(event, frame);
        apply(review);
      });
      frame.addEventListener("pointermove", function (event) {
        if (!frame.hasPointerCapture(event.pointerId)) return;
        setSplitFrom(event, frame);
        apply(review);
      });
    }
    review.querySelectorAll("input[name=view]").forEach(function (input) {
      input.addEventListener("change", function () {
        view.mode = input.value;
        apply(review);
      });
    });
    review.querySelectorAll("input[name=mask], input[name=boxes]").forEach(function (input) {
      input.addEventListener("change", function () {
        view[input.name] = input.checked;
        apply(review);
      });
    });
    review.querySelectorAll(".box-list li").forEach(function (entry) {
      const box = review.querySelector('.box[data-box="' + entry.dataset.box + '"]');
      if (!box) return;
      entry.addEventListener("mouseenter", function () { box.classList.add("hot"); });
      entry.addEventListener("mouseleave", function () { box.classList.remove("hot"); });
    });
    // Fetch the next image's pictures now, so that moving on shows them at once.
    review.querySelectorAll("[data-prefetch]").forEach(function (link) {
      link.dataset.prefetch.split(" ").filter(Boolean).forEach(function (url) {
        new Image().src = url;
      });
    });
  }

  function press(review, key) {
    const target = review.querySelector('[data-key="' + key + '"]');
    if (target && !target.disabled) target.click();
    return Boolean(target);
  }

  document.addEventListener("keydown", function (event) {
    const review = root();
    if (!review || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("input[type=text], textarea, select")) return;
    if (review.classList.contains("htmx-request") || document.querySelector(".htmx-request")) return;
    const changed = review.querySelector(".compare")?.dataset.changed === "1";
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    let handled = true;
    if (key === "a" || key === "x") {
      press(review, key);
    } else if (key === "ArrowLeft" || key === "ArrowRight") {
      press(review, key);
    } else if (key === " " && changed) {
      view.mode = view.mode === "before" ? "after" : "before";
    } else if (key === "s" && changed) {
      view.mode = "slider";
    } else if (key === "m" && changed) {
      view.mask = !view.mask;
    } else if (key === "o") {
      view.boxes = !view.boxes;
    } else {
      handled = false;
    }
    if (handled) {
      event.preventDefault();
      apply(review);
    }
  });

  document.addEventListener("htmx:afterSettle", function () { init(root()); });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { init(root()); });
  } else {
    init(root());
  }
})();
