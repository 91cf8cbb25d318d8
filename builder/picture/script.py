"""The page's one script: draws the boxes ``layout`` computed, zooms on a click, shows exact sizes on hover.

It reads the trees from the page's JSON block (``<script type="application/json"
id="data">``) and writes names only as text (``textContent``, SVG ``<title>``),
never as markup. When every panel is drawn it sets ``data-render="ok"`` on
``<body>`` (``"error: ..."`` if anything threw), so a headless browser's DOM
says whether it ran. The page's Content-Security-Policy allows this script
by its hash and nothing else.
"""

SCRIPT = r"""
(function () {
  "use strict";
  var body = document.body;
  window.addEventListener("error", function (event) {
    body.setAttribute("data-render", "error: " + event.message);
  });
  var NS = document.querySelector("svg").namespaceURI;  // the page holds no URL, not even this one
  var data = JSON.parse(document.getElementById("data").textContent);
  var tip = document.getElementById("tip");
  var UNITS = ["B", "KiB", "MiB", "GiB"];

  function human(n) {
    var v = n, i = 0;
    while (Math.abs(v) >= 1024 && i < UNITS.length - 1) { v /= 1024; i += 1; }
    return i ? v.toFixed(1) + " " + UNITS[i] : n + " B";
  }
  function exact(n) { return n.toLocaleString("en-US") + " bytes (" + human(n) + ")"; }
  function make(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function describe(panel, node, trail) {
    var lines = [trail.concat([node.n]).join("/"), exact(node.b)];
    if (node.f > 1) { lines.push(node.f.toLocaleString("en-US") + " files"); }
    var label = panel.labels[node.k];
    if (label) { lines.push(label); }
    if (node.m && node.m.length > 1) {
      node.m.forEach(function (part) {
        lines.push("  " + (panel.labels[part[0]] || part[0]) + ": " + exact(part[1]));
      });
    }
    if (node.t) { lines.push(node.t); }
    if (node.d) { lines.push(node.d); }
    return lines.join("\n");
  }
  function hover(target, panel, node, trail) {
    target.addEventListener("mousemove", function (event) {
      event.stopPropagation();
      tip.textContent = describe(panel, node, trail);
      tip.hidden = false;
      var x = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
      tip.style.left = Math.max(4, x) + "px";
      tip.style.top = (event.clientY + 14 + window.scrollY) + "px";
    });
    target.addEventListener("mouseleave", function () { tip.hidden = true; });
  }
  function fill(panel, node) { return panel.colors[node.k] || "#bdbdbd"; }
  function label(group, text, box, size, weight) {
    var t = make("text", {x: box[0] + 4, y: box[1] + size + 1, "font-size": size, "class": "label"}, group);
    if (weight) { t.setAttribute("font-weight", weight); }
    t.textContent = text;
    var room = box[2] - 8;
    if (box[3] < size + 4 || room < 12) { group.removeChild(t); return null; }
    if (t.getComputedTextLength() > room) {
      var cut = text;
      while (cut.length > 1 && t.getComputedTextLength() > room) {
        cut = cut.slice(0, -1);
        t.textContent = cut + "\u2026";
      }
      if (t.getComputedTextLength() > room || cut.length < 3) { group.removeChild(t); return null; }
    }
    return t;
  }
  function draw(panel) {
    var svg = panel.svg, node = panel.stack[panel.stack.length - 1];
    var trail = panel.stack.slice(1).map(function (n) { return n.n; });
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    (node.c || []).forEach(function (child) {
      if (!child.v) { return; }
      var box = child.v;
      var group = make("g", {"class": child.c ? "box dir" : "box", "data-bytes": child.b}, svg);
      group.setAttribute("data-name", child.n);
      group.setAttribute("aria-label", describe(panel, child, trail));  // what hovering shows, for readers too
      make("rect", {x: box[0], y: box[1], width: box[2], height: box[3], fill: fill(panel, child)}, group);
      hover(group, panel, child, trail);
      if (child.c) {
        child.c.forEach(function (inner) {
          if (!inner.i) { return; }
          var r = make("rect", {x: inner.i[0], y: inner.i[1], width: inner.i[2], height: inner.i[3],
                                fill: fill(panel, inner), "class": "inner"}, group);
          hover(r, panel, inner, trail.concat([child.n]));
          if (inner.i[2] > 60 && inner.i[3] > 24) {
            label(group, inner.n, inner.i, 10);
          }
        });
        group.addEventListener("click", function () {
          panel.stack.push(child);
          tip.hidden = true;
          draw(panel);
          remember(panel);
        });
      }
      var named = label(group, child.n, box, 12, "600");
      if (named && box[3] > 36 && !child.c) {
        var size = make("text", {x: box[0] + 4, y: box[1] + 28, "font-size": 10, "class": "size"}, group);
        size.textContent = human(child.b);
        if (size.getComputedTextLength() > box[2] - 8) { group.removeChild(size); }
      }
    });
    crumbs(panel);
    mark(panel);
  }
  function crumbs(panel) {
    var nav = panel.nav;
    while (nav.firstChild) { nav.removeChild(nav.firstChild); }
    panel.stack.forEach(function (node, depth) {
      if (depth) { nav.appendChild(document.createTextNode(" / ")); }
      var last = depth === panel.stack.length - 1;
      var item = document.createElement(last ? "span" : "button");
      item.textContent = (depth ? node.n : panel.title) + (last ? " \u2014 " + human(node.b) : "");
      if (!last) {
        item.type = "button";
        item.addEventListener("click", function () {
          panel.stack = panel.stack.slice(0, depth + 1);
          draw(panel);
          remember(panel);
        });
      }
      nav.appendChild(item);
    });
  }
  function mark(panel) {
    // Where each label is on the page, in CSS pixels: what a screenshot test looks at.
    Array.prototype.forEach.call(panel.svg.querySelectorAll("text.label"), function (t) {
      var r = t.getBoundingClientRect();
      t.setAttribute("data-box", [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]
        .map(function (v) { return v.toFixed(1); }).join(","));
    });
  }
  // The view shown is in the address: #PANEL/DIR/DIR (each name URI-encoded), to come back to or to share.
  function remember(panel) {
    var names = panel.stack.slice(1).map(function (n) { return encodeURIComponent(n.n); });
    var here = location.pathname + location.search;
    history.replaceState(null, "", names.length ? "#" + [panel.name].concat(names).join("/") : here);
  }
  function restore(panel) {
    var parts = location.hash.slice(1).split("/");
    if (parts[0] !== panel.name) { return; }
    for (var i = 1; i < parts.length; i += 1) {
      var name;
      try { name = decodeURIComponent(parts[i]); } catch (e) { return; }  // a mangled address: the top view
      var top = panel.stack[panel.stack.length - 1];
      var next = (top.c || []).filter(function (c) { return c.c && c.n === name; })[0];
      if (!next) { return; }
      panel.stack.push(next);
    }
  }
  var panels = [];
  Array.prototype.forEach.call(document.querySelectorAll(".panel[data-tree]"), function (element) {
    var name = element.getAttribute("data-tree"), spec = data.panels[name];
    var panel = {svg: element.querySelector("svg"), nav: element.querySelector("nav"), stack: [spec.tree],
                 colors: spec.colors, labels: spec.labels, title: spec.title, name: name};
    panels.push(panel);
    restore(panel);
    draw(panel);
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" && event.key !== "Backspace") { return; }
    panels.forEach(function (panel) {
      if (panel.stack.length > 1) { panel.stack.pop(); draw(panel); }
    });
  });
  if (!body.hasAttribute("data-render")) { body.setAttribute("data-render", "ok"); }
})();
"""
