/* The live high-intent feed: one socket to /ws, a dashboard_feed message with the page's ticket,
   then every high_intent_post event (matching the page's product and region) on top of the list.
   Reconnects with backoff; a ticket that expired means the page is reloaded for a fresh one. */
(function () {
  "use strict";
  var box = document.getElementById("live");
  if (!box) { return; }
  var list = document.getElementById("live-feed"), status = document.getElementById("live-status");
  var product = box.getAttribute("data-product"), region = (box.getAttribute("data-region") || "").toLowerCase();
  var delay = 1000, last = null, MAX_ITEMS = 100, seen = {};

  function say(text) { status.textContent = text; }

  function show(event) {
    var post = event.post || {};
    if (product && event.product_category !== product) { return; }
    if (region && (event.region || "").toLowerCase() !== region) { return; }
    if (post.uri && seen[post.uri]) { return; }  // a retried classification publishes a post again
    if (post.uri) { seen[post.uri] = true; }
    var item = document.createElement("li");
    var meta = document.createElement("span");
    meta.className = "badge";
    meta.textContent = "intent " + event.purchase_intent + (event.product_category ? " · " + event.product_category : "") +
      (event.region ? " · " + event.region : "");
    item.appendChild(meta);
    item.appendChild(document.createTextNode(" " + (post.text || post.uri || "")));
    list.insertBefore(item, list.firstChild);
    while (list.children.length > MAX_ITEMS) { list.removeChild(list.lastChild); }
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss:" : "ws:";
    var socket = new WebSocket(scheme + "//" + location.host + "/ws");
    socket.onopen = function () {
      var message = { type: "dashboard_feed", ticket: box.getAttribute("data-ticket") };
      if (last) { message.since = last; }
      socket.send(JSON.stringify(message));
    };
    socket.onmessage = function (frame) {
      var message = JSON.parse(frame.data);
      if (message.type === "feed_ok") { delay = 1000; say("Live: new high-intent posts appear here."); box.setAttribute("data-live", "1"); }
      else if (message.type === "high_intent_post") { last = message.id; show(message); }
      else if (message.type === "error") { say("Live feed stopped: " + message.message); }
    };
    socket.onclose = function (closed) {
      box.removeAttribute("data-live");
      if (closed.code === 4401) { say("Your session ended: reload the page to sign in again."); return; }
      say("Disconnected: reconnecting…");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }
  connect();
})();
