// The live page: mentions of one watch as the console's event stream sends them (server-sent events).
// Every value is set with textContent or an attribute: a mention is anyone's text, never HTML.
(function () {
  "use strict";
  var script = document.currentScript;
  var list = document.getElementById("live");
  var row = document.getElementById("row");
  var words = JSON.parse(document.getElementById("words").textContent);
  var waiting = document.getElementById("waiting");
  var MAX_ROWS = 200;

  function show(m) {
    var li = row.content.firstElementChild.cloneNode(true);
    li.dataset.id = m.id;
    var badge = li.querySelector(".sentiment");
    badge.textContent = words[m.sentiment] || m.sentiment;
    badge.classList.add("sent-" + m.sentiment);
    var link = li.querySelector(".title");
    link.textContent = m.title || m.text.slice(0, 80);
    if (/^https?:\/\//.test(m.url)) { link.href = m.url; }
    li.querySelector(".source").textContent = m.site ? m.source + " (" + m.site + ")" : m.source;
    li.querySelector(".lang").textContent = m.lang || "?";
    li.querySelector(".story").textContent = String(m.story_size);
    var time = li.querySelector("time");
    time.dateTime = m.published_at;
    time.textContent = new Date(m.published_at).toLocaleTimeString();
    li.querySelector(".text").textContent = m.text;
    var form = li.querySelector("form.correct");
    if (form) {
      form.action = "/mentions/" + encodeURIComponent(m.id) + "/correct";
      form.elements.predicted.value = m.sentiment;
      form.elements.text.value = (m.title ? m.title + " " : "") + m.text;
      form.elements.lang.value = m.lang || "";
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        fetch(form.action, { method: "POST", body: new FormData(form), headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" })
          .then(function (r) { if (r.ok) { form.replaceWith(document.createTextNode(words.saved)); } });
      });
    }
    list.insertBefore(li, list.firstChild);
    while (list.children.length > MAX_ROWS) { list.removeChild(list.lastChild); }
    if (waiting) { waiting.hidden = true; }
  }

  var source = new EventSource(script.dataset.events);
  source.addEventListener("mention", function (ev) { show(JSON.parse(ev.data)); });
})();
