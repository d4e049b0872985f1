// The usage panel of a dataset page: reads /api/v1/datasets/<id>/usage/ (same visibility as the
// page) and draws reads and writes per day as an inline SVG bar chart, with top readers, columns
// never read in 90 days and, for those who may see them, who read the Restricted columns.
(function () {
  "use strict";
  const section = document.getElementById("usage");
  if (!section) return;
  const status = section.querySelector("[data-usage-status]");
  const chart = section.querySelector("[data-usage-chart]");
  const details = section.querySelector("[data-usage-details]");
  const svgNS = "http://www.w3.org/2000/svg";

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function bars(perDay) {
    const width = 600, height = 120, pad = 20;
    const max = Math.max(1, ...perDay.map((d) => d.read + d.write));
    const step = (width - pad) / perDay.length;
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height + pad}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("class", "usage-chart");
    svg.setAttribute("width", String(width));
    svg.setAttribute("height", String(height + pad));
    svg.style.maxWidth = "100%";
    svg.style.height = "auto";
    const total = perDay.reduce((s, d) => s + d.read + d.write, 0);
    svg.setAttribute("aria-label", `Reads and writes per day over ${perDay.length} days: ${total} in all`);
    perDay.forEach((day, i) => {
      const x = pad + i * step;
      [["read", "#2f6fb0", 0], ["write", "#c77d1a", day.read]].forEach(([key, colour, below]) => {
        if (!day[key]) return;
        const h = (day[key] / max) * height, y = height - (below / max) * height - h;
        const rect = document.createElementNS(svgNS, "rect");
        Object.entries({ x: x + 1, y, width: Math.max(1, step - 2), height: h, fill: colour }).forEach(([k, v]) => rect.setAttribute(k, v));
        const title = document.createElementNS(svgNS, "title");
        title.textContent = `${day.date}: ${day[key]} ${key}${day[key] === 1 ? "" : "s"}`;
        rect.appendChild(title);
        svg.appendChild(rect);
      });
    });
    const axis = document.createElementNS(svgNS, "text");
    axis.setAttribute("x", pad); axis.setAttribute("y", height + 15); axis.setAttribute("font-size", "11");
    axis.textContent = `${perDay[0].date} → ${perDay[perDay.length - 1].date} (blue: reads, orange: writes; highest day ${max})`;
    svg.appendChild(axis);
    return svg;
  }

  function table(caption, headers, rows) {
    const t = el("table", { class: "data-table" });
    t.appendChild(el("caption", {}, caption));
    const head = el("tr");
    headers.forEach((h) => head.appendChild(el("th", { scope: "col" }, h)));
    t.appendChild(el("thead")).appendChild(head);
    const body = t.appendChild(el("tbody"));
    rows.forEach((cells) => {
      const tr = body.appendChild(el("tr"));
      cells.forEach((c) => tr.appendChild(el("td", {}, c)));
    });
    return t;
  }

  fetch(section.dataset.usageUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
    .then((usage) => {
      status.textContent = usage.reads
        ? `${usage.reads} read${usage.reads === 1 ? "" : "s"} recorded; last read ${new Date(usage.lastRead).toLocaleString()}.`
        : "No reads recorded from the warehouse's audit log.";
      chart.appendChild(bars(usage.perDay));
      const when = (v) => (v ? new Date(v).toLocaleString() : "");
      if (usage.topReaders.length) {
        details.appendChild(table(`Top readers (${usage.neverReadDays} days)`, ["Reader", "Reads", "Last read"],
          usage.topReaders.map((r) => [r.reader, String(r.reads), when(r.lastRead)])));
      }
      details.appendChild(el("p", { class: "small" },
        usage.neverReadColumns.length
          ? `Never read in ${usage.neverReadDays} days: ${usage.neverReadColumns.join(", ")}`
          : `Every column was read in the last ${usage.neverReadDays} days.`));
      if (usage.restrictedReaders) {
        details.appendChild(table("Readers of Restricted columns", ["Reader", "Allowed by", "Reads", "Last read"],
          usage.restrictedReaders.map((r) => [r.reader, r.finding ? "nothing (finding)" : r.allowedBy,
            String(r.reads), when(r.lastRead)])));
      }
      details.hidden = false;
    })
    .catch(() => { status.textContent = "Usage could not be loaded."; });
})();
