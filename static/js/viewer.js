/*
 * The reading screen: window/level, zoom, pan and invert on the image, keyboard answering, active-time measurement,
 * prefetching of the next image and the optional blank screen between cases.
 *
 * Window/level is an SVG feComponentTransfer filter on the <img> (exact, linear, GPU-composited): with window W and
 * level L on the 0..1 display scale, out = (in - (L - W/2)) / W, clamped; invert flips it. The server renders each
 * case as an htmx partial (#case); everything here re-initialises when a new partial is swapped in.
 */
(function () {
  "use strict";

  const IDLE_MS = 30000; // no input for this long and the reader is idle: time stops counting
  const TICK_MS = 250;
  const SCORE_ORDER = ["confidence", "anatomy", "style", "artifacts"];

  let state = null;

  function freshState(root) {
    return {
      root: root,
      width: 1, level: 0.5, invert: false,
      zoom: 1, panX: 0, panY: 0,
      activeMs: 0, lastTick: null, lastInput: Date.now(), counting: false,
      armed: null,
    };
  }

  // --- window/level, zoom, pan -------------------------------------------------------------------------------

  function applyView() {
    const img = state.root.querySelector("#xray");
    if (!img) return;
    let slope = 1 / state.width;
    let intercept = 0.5 - state.level / state.width;
    if (state.invert) {
      slope = -slope;
      intercept = 1 - intercept;
    }
    document.querySelectorAll("#window-level feComponentTransfer > *").forEach(function (fn) {
      fn.setAttribute("slope", slope.toFixed(5));
      fn.setAttribute("intercept", intercept.toFixed(5));
    });
    img.style.filter = "url(#window-level)";
    img.style.transform = "translate(" + state.panX + "px, " + state.panY + "px) scale(" + state.zoom + ")";
    img.dataset.window = state.width.toFixed(3);
    img.dataset.level = state.level.toFixed(3);
    img.dataset.invert = state.invert ? "1" : "0";
    const readout = state.root.querySelector(".readout");
    if (readout) {
      readout.textContent = "W " + Math.round(state.width * 100) + "% · L " + Math.round(state.level * 100) + "%" +
        (state.invert ? " · inverted" : "") + (state.zoom !== 1 ? " · " + state.zoom.toFixed(1) + "×" : "");
    }
  }

  function setPreset(key) {
    const button = state.root.querySelector('[data-preset="' + key + '"]');
    if (!button) return;
    state.width = parseFloat(button.dataset.width);
    state.level = parseFloat(button.dataset.level);
    applyView();
  }

  function resetView() {
    state.width = 1; state.level = 0.5; state.invert = false;
    state.zoom = 1; state.panX = 0; state.panY = 0;
    applyView();
  }

  function zoomBy(factor) {
    state.zoom = Math.min(8, Math.max(0.5, state.zoom * factor));
    applyView();
  }

  function bindPointer(stage) {
    let drag = null;
    stage.addEventListener("pointerdown", function (event) {
      if (!state.root.querySelector("#xray")) return;
      const pan = event.shiftKey || event.button === 1;
      drag = { x: event.clientX, y: event.clientY, pan: pan, width: state.width, level: state.level,
               panX: state.panX, panY: state.panY };
      stage.setPointerCapture(event.pointerId);
      event.preventDefault();
    });
    stage.addEventListener("pointermove", function (event) {
      if (!drag) return;
      const dx = event.clientX - drag.x;
      const dy = event.clientY - drag.y;
      if (drag.pan) {
        state.panX = drag.panX + dx;
        state.panY = drag.panY + dy;
      } else {
        // Right widens the window, down raises the level: the convention of clinical viewers.
        state.width = Math.min(2, Math.max(0.02, drag.width * Math.exp(dx / 200)));
        state.level = Math.min(1.2, Math.max(-0.2, drag.level + dy / 400));
      }
      applyView();
    });
    const end = function () { drag = null; };
    stage.addEventListener("pointerup", end);
    stage.addEventListener("pointercancel", end);
    stage.addEventListener("wheel", function (event) {
      event.preventDefault();
      zoomBy(event.deltaY < 0 ? 1.15 : 1 / 1.15);
    }, { passive: false });
  }

  // --- answering ---------------------------------------------------------------------------------------------

  function form() { return state.root.querySelector("#reading-form"); }

  function scoreFields() {
    return SCORE_ORDER.map(function (name) { return state.root.querySelector('[data-score="' + name + '"]'); })
      .filter(function (el) { return el && !el.disabled; });
  }

  function arm(name) {
    state.armed = name;
    scoreFields().forEach(function (fs) { fs.classList.toggle("armed", fs.dataset.score === name); });
  }

  function nextEmptyScore(after) {
    const fields = scoreFields();
    const start = fields.findIndex(function (fs) { return fs.dataset.score === after; }) + 1;
    for (let i = start; i < fields.length; i++) {
      if (!fields[i].querySelector("input:checked")) return fields[i].dataset.score;
    }
    return null;
  }

  function setRadio(name, value) {
    const input = state.root.querySelector('input[name="' + name + '"][value="' + value + '"]');
    if (input && !input.disabled && !input.closest("fieldset[disabled]")) {
      input.checked = true;
      return true;
    }
    return false;
  }

  function pressDigit(digit) {
    const target = state.armed || "confidence";
    if (!setRadio(target, digit)) return;
    arm(nextEmptyScore(target) || target);
  }

  function missing() {
    const f = form();
    if (!f) return [];
    const names = ["call"].concat(scoreFields().map(function (fs) { return fs.dataset.score; }));
    return names.filter(function (name) { return !f.querySelector('input[name="' + name + '"]:checked'); });
  }

  function submit() {
    const f = form();
    if (!f) return;
    const absent = missing();
    const box = f.querySelector(".client-error") || document.createElement("p");
    box.className = "error client-error";
    box.setAttribute("role", "alert");
    if (absent.length) {
      box.textContent = "Still to answer: " + absent.join(", ") + ".";
      f.querySelector(".actions").before(box);
      if (absent[0] !== "call") arm(absent[0]);
      return;
    }
    box.remove();
    tick();
    f.querySelector('input[name="active_ms"]').value = String(Math.round(state.activeMs));
    if (window.htmx) {
      htmx.trigger(f, "submit");
    } else {
      f.submit();
    }
  }

  function navigate(offset) {
    const position = parseInt(state.root.dataset.position, 10);
    if (isNaN(position)) return;
    const url = state.root.dataset.pageUrl + "?position=" + (position + offset);
    htmx.ajax("GET", url, { target: "#case", swap: "outerHTML" });
  }

  function onKey(event) {
    if (!state) return;
    state.lastInput = Date.now();
    const tag = (event.target.tagName || "").toLowerCase();
    if (tag === "textarea" || (tag === "input" && event.target.type === "text")) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); submit(); }
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.toLowerCase();
    if (key === "r") { setRadio("call", "real"); }
    else if (key === "s") { setRadio("call", "synthetic"); }
    else if (/^[1-9]$/.test(key)) { pressDigit(key); }
    else if (key === "enter") {
      event.preventDefault();
      const next = state.root.querySelector('[data-action="next"]');
      if (next) { navigate(1); } else { submit(); }
    }
    else if (key === "arrowleft" && state.root.dataset.canGoBack === "1") { navigate(-1); }
    else if (key === "arrowright" && state.root.dataset.canGoBack === "1") { navigate(1); }
    else if (["d", "l", "t", "b"].indexOf(key) >= 0) { setPreset(key); }
    else if (key === "i") { state.invert = !state.invert; applyView(); }
    else if (key === "0") { resetView(); }
    else if (key === "+" || key === "=") { zoomBy(1.25); }
    else if (key === "-") { zoomBy(1 / 1.25); }
    else { return; }
    event.preventDefault();
  }

  // --- active time -------------------------------------------------------------------------------------------

  function tick() {
    if (!state) return;
    const now = Date.now();
    if (state.counting && state.lastTick !== null) {
      const visible = document.visibilityState === "visible" && document.hasFocus();
      const idle = now - state.lastInput > IDLE_MS;
      if (visible && !idle) state.activeMs += now - state.lastTick;
    }
    state.lastTick = now;
  }

  function startCounting() {
    state.counting = true;
    state.lastTick = Date.now();
    state.lastInput = Date.now();
  }

  // --- per-case set-up ---------------------------------------------------------------------------------------

  function init(root) {
    state = freshState(root);
    const stage = root.querySelector(".stage");
    if (stage) bindPointer(stage);
    root.querySelectorAll("[data-preset]").forEach(function (b) {
      b.addEventListener("click", function () { setPreset(b.dataset.preset); });
    });
    const actions = {
      "invert": function () { state.invert = !state.invert; applyView(); },
      "zoom-in": function () { zoomBy(1.25); },
      "zoom-out": function () { zoomBy(1 / 1.25); },
      "reset": resetView,
      "previous": function () { navigate(-1); },
      "next": function () { navigate(1); },
    };
    root.querySelectorAll("[data-action]").forEach(function (b) {
      b.addEventListener("click", function () { actions[b.dataset.action](); });
    });
    scoreFields().forEach(function (fs) {
      fs.addEventListener("click", function () { arm(fs.dataset.score); });
    });
    const f = form();
    if (f) {
      f.addEventListener("submit", function () {
        tick();
        f.querySelector('input[name="active_ms"]').value = String(Math.round(state.activeMs));
      });
    }
    arm(nextEmptyScore(null) || "confidence");
    applyView();

    const img = root.querySelector("#xray");
    const blank = root.querySelector(".blank");
    const blankMs = parseInt(root.dataset.blankMs || "0", 10);
    const reveal = function () {
      if (blank) blank.hidden = true;
      if (img) img.style.visibility = "visible";
      startCounting();
    };
    const prefetch = function () {
      if (root.dataset.nextImage) { const next = new Image(); next.src = root.dataset.nextImage; }
    };
    if (img) {
      if (img.complete) { prefetch(); } else { img.addEventListener("load", prefetch, { once: true }); }
    }
    if (blankMs > 0 && root.dataset.swapped === "1" && img) {
      img.style.visibility = "hidden";
      blank.hidden = false;
      setTimeout(reveal, blankMs);
    } else {
      reveal();
    }
  }

  document.addEventListener("keydown", onKey);
  ["pointerdown", "pointermove", "wheel", "touchstart"].forEach(function (name) {
    document.addEventListener(name, function () { if (state) state.lastInput = Date.now(); }, { passive: true });
  });
  document.addEventListener("visibilitychange", tick);
  window.addEventListener("blur", tick);
  setInterval(tick, TICK_MS);

  document.addEventListener("htmx:beforeSwap", function (event) {
    tick();
    if (event.detail.target && event.detail.target.id === "case") event.detail.shouldSwap = true;
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    const root = document.getElementById("case");
    if (root) { root.dataset.swapped = "1"; init(root); }
  });
  document.addEventListener("htmx:sendError", function () {
    const f = state && form();
    if (!f) return;
    const box = document.createElement("p");
    box.className = "error client-error";
    box.setAttribute("role", "alert");
    box.textContent = "Network problem: your answer was not confirmed. Press Enter to send it again (it is recorded once).";
    f.querySelector(".actions").before(box);
  });
  document.addEventListener("DOMContentLoaded", function () {
    const root = document.getElementById("case");
    if (root) init(root);
  });
})();
