// The watch overview's charts (uPlot, vendored): volume against the detector's baseline with the
// alerts as vertical marks, and the negative/positive share per bucket. Data comes from the page.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("series").textContent);
  var words = data.words;
  var xs = data.buckets.map(function (b) { return Date.parse(b.start) / 1000; });
  var firing = data.alerts.filter(function (a) { return a.status === "firing"; })
    .map(function (a) { return Date.parse(a.raised_at) / 1000; });

  function width(el) { return Math.max(280, el.clientWidth || 320); }

  function alertMarks(u) {
    var ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = "#b3261e";
    ctx.lineWidth = 2;
    firing.forEach(function (t) {
      var x = Math.round(u.valToPos(t, "x", true));
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) { return; }
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
    });
    ctx.restore();
  }

  var volumeEl = document.getElementById("volume");
  var volume = new uPlot({
    width: width(volumeEl), height: 220,
    series: [
      {},
      { label: words.mentions, stroke: "#0b57d0", width: 2, fill: "rgba(11,87,208,0.08)" },
      { label: words.baseline, stroke: "#57606a", width: 1, dash: [6, 4] }
    ],
    axes: [{}, {}],
    hooks: { draw: [alertMarks] }
  }, [xs, data.buckets.map(function (b) { return b.total; }),
      data.buckets.map(function (b) { return b.expected; })], volumeEl);

  var shareEl = document.getElementById("share");
  var share = new uPlot({
    width: width(shareEl), height: 160,
    scales: { y: { range: [0, 100] } },
    series: [
      {},
      { label: words.negative, stroke: "#b3261e", width: 2 },
      { label: words.positive, stroke: "#146c2e", width: 2 }
    ]
  }, [xs, data.buckets.map(function (b) { return b.total ? Math.round(b.share.negative * 100) : null; }),
      data.buckets.map(function (b) { return b.total ? Math.round(b.share.positive * 100) : null; })], shareEl);

  window.addEventListener("resize", function () {
    volume.setSize({ width: width(volumeEl), height: 220 });
    share.setSize({ width: width(shareEl), height: 160 });
  });
})();
