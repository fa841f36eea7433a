/* Reviewer queue: live polling pauses while the reviewer types; keys j/k move, o diff, c comment, a approve once,
   s approve for this session, d deny. */
(function () {
  "use strict";
  var selectedId = null;

  function cards() { return Array.prototype.slice.call(document.querySelectorAll("#queue .approval")); }

  function typing(el) {
    return el && (el.tagName === "TEXTAREA" || el.tagName === "INPUT" || el.tagName === "SELECT" || el.isContentEditable);
  }

  // Polling (hx-trigger filter): skip a tick while the reviewer is writing a comment in the queue.
  window.cordumQueueIdle = function () {
    var active = document.activeElement;
    if (typing(active) && active.closest("#queue")) { return false; }
    return !cards().some(function (card) {
      var box = card.querySelector("textarea");
      return box && box.value.trim() !== "";
    });
  };

  function select(card) {
    cards().forEach(function (c) { c.classList.remove("selected"); });
    if (!card) { selectedId = null; return; }
    card.classList.add("selected");
    selectedId = card.dataset.approval;
  }

  function current() {
    var list = cards();
    var found = list.filter(function (c) { return c.dataset.approval === selectedId; })[0];
    return found || list[0] || null;
  }

  function move(step) {
    var list = cards();
    if (!list.length) { return; }
    var index = list.indexOf(current());
    var next = list[Math.min(list.length - 1, Math.max(0, index + step))];
    select(next);
    next.scrollIntoView({block: "nearest"});
  }

  function click(selector) {
    var card = current();
    var button = card && card.querySelector(selector);
    if (button) { select(card); button.click(); }
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) { return; }
    var card;
    switch (event.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "a": click("button.approve:not(.approve-session)"); break;
      case "s": click("button.approve-session"); break;
      case "d": click("button.deny"); break;
      case "o":
        card = current();
        var diff = card && (card.querySelector("details.approval-diff") || card.querySelector("details.approval-args"));
        if (diff) { select(card); diff.open = !diff.open; }
        break;
      case "c":
        card = current();
        if (card && card.querySelector("textarea")) { select(card); card.querySelector("textarea").focus(); event.preventDefault(); }
        break;
      default: return;
    }
  });

  document.addEventListener("click", function (event) {
    var card = event.target.closest && event.target.closest("#queue .approval");
    if (card) { select(card); }
  });

  // Keep the selection across live updates.
  // Browser notifications while the queue is open: one per request that arrives after the page loaded.
  var seen = null;
  function notifyNew() {
    var ids = cards().map(function (c) { return c.dataset.approval; });
    if (seen !== null && window.Notification && Notification.permission === "granted") {
      cards().forEach(function (card) {
        if (seen.indexOf(card.dataset.approval) < 0) {
          new Notification("Cordum: approval needed", { body: card.dataset.summary || "", tag: card.dataset.approval });
        }
      });
    }
    seen = ids;
  }
  function offerNotifications() {
    var offer = document.querySelector(".queue-notify");
    if (!offer || !window.Notification || Notification.permission !== "default") { return; }
    offer.hidden = false;
    document.getElementById("notify-me").addEventListener("click", function () {
      Notification.requestPermission().then(function () { offer.hidden = true; });
    });
  }
  document.addEventListener("htmx:afterSettle", function () { select(current()); notifyNew(); });
  document.addEventListener("DOMContentLoaded", function () { select(current()); notifyNew(); offerNotifications(); });
})();
