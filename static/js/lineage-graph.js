/*
 * The lineage graph on a dataset's page: Cytoscape.js with the dagre layout, left to right.
 *
 * It reads the lineage API (the same JSON pipelines and scripts get), draws datasets and
 * external sources, and on demand a dataset's columns as children of its node with the
 * column edges. Plain script, no build step; the vendored libraries are in static/vendor.
 *
 * Hooks for tests and for people in the console: window.lineageGraph is the Cytoscape
 * instance; the container's data-state is loading | ready | empty | error and
 * data-node-count / data-edge-count count what is drawn.
 */
(function () {
  "use strict";

  var container = document.getElementById("lineage-graph");
  if (!container) {
    return;
  }
  var box = container.closest(".lineage-graph-box");
  var form = document.getElementById("lineage-controls");
  var panel = document.getElementById("lineage-panel");
  var tools = box.querySelector(".lineage-graph-tools");
  var countLabel = box.querySelector(".lineage-graph-count");
  var partialNotice = box.querySelector(".lineage-graph-partial");
  var finder = box.querySelector(".lineage-graph-find");
  var pageDatasetId = Number(container.dataset.datasetId);

  var SENSITIVITY = {
    public: { fill: "#e7f5eb", border: "#5fae76", text: "#1e5c30" },
    regular: { fill: "#e8f0fc", border: "#6f9de0", text: "#1a4a8a" },
    sensitive: { fill: "#fff3d1", border: "#d9a21c", text: "#6e4500" },
    restricted: { fill: "#a4262c", border: "#7d1c21", text: "#ffffff" },
    unclassified: { fill: "#efeaf7", border: "#8f7fb3", text: "#4a3b6b" },
    unknown: { fill: "#f1f4f8", border: "#b8c0cb", text: "#1d2430" },
  };
  var EDGE_KINDS = {
    origin: "Originating source",
    model_output: "Model output",
    copy: "Copy",
    transformation: "Transformation",
    aggregation: "Aggregation",
    indirect: "Indirect (filter, join, sort …)",
    view: "View",
    job: "Job",
  };

  function setState(state, message) {
    container.dataset.state = state;
    var note = box.querySelector(".lineage-graph-message");
    if (message) {
      note.replaceChildren.apply(note, [].concat(message));
      note.hidden = false;
    } else {
      note.hidden = true;
    }
  }

  if (typeof window.cytoscape !== "function") {
    setState("error", "The graph could not be loaded; the lists below show the same lineage.");
    return;
  }

  // --- small DOM helper: text only, never HTML from the data ---------------------------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (attrs[key] === null || attrs[key] === undefined || attrs[key] === false) {
        return;
      }
      if (key === "text") {
        node.textContent = attrs[key];
      } else if (key === "className") {
        node.className = attrs[key];
      } else if (key.slice(0, 2) === "on") {
        node.addEventListener(key.slice(2), attrs[key]);
      } else {
        node.setAttribute(key, attrs[key]);
      }
    });
    (children || []).forEach(function (child) {
      if (child !== null && child !== undefined && child !== false) {
        node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
      }
    });
    return node;
  }

  function badge(sensitivity, extraTitle) {
    if (!sensitivity) {
      return null;
    }
    return el("span", { className: "badge sens-" + sensitivity.toLowerCase(), title: extraTitle, text: sensitivity });
  }

  // A qualified name that wraps after its dots rather than mid-word.
  function dotted(name, className) {
    var span = el("span", { className: className });
    String(name).split(".").forEach(function (part, index) {
      if (index) {
        span.append(".", document.createElement("wbr"));
      }
      span.append(part);
    });
    return span;
  }

  function urlFor(template, first, second) {
    var url = template.replace("111111111", String(first));
    return second === undefined ? url : url.replace("222222222", String(second));
  }

  function hops(depth) {
    var n = Math.abs(depth);
    return n + " hop" + (n === 1 ? "" : "s");
  }

  // --- the graph -------------------------------------------------------------------
  var cy = window.cytoscape({
    container: container,
    minZoom: 0.08,
    maxZoom: 2.5,
    boxSelectionEnabled: false,
    autoungrabify: false,
    style: graphStyle(),
  });
  window.lineageGraph = cy;

  var expanded = new Set(); // dataset ids whose columns are shown
  var generation = 0; // ignores responses to superseded requests
  var current = { direction: "both", depth: 3 };

  function graphStyle() {
    var style = [
      {
        selector: "node",
        style: {
          label: "data(label)",
          "font-family": "system-ui, sans-serif",
          "font-size": 12,
          "text-valign": "center",
          "text-halign": "center",
          "text-wrap": "ellipsis",
          "text-max-width": "data(textWidth)",
          width: "data(width)",
          height: 34,
          shape: "round-rectangle",
          "background-color": SENSITIVITY.unknown.fill,
          "border-width": 1.5,
          "border-color": SENSITIVITY.unknown.border,
          color: SENSITIVITY.unknown.text,
          "min-zoomed-font-size": 7,
        },
      },
      {
        selector: "node[kind = 'column']",
        style: { height: 24, "font-size": 11, "font-family": "monospace" },
      },
      {
        selector: "node[kind = 'source']",
        style: {
          shape: "cut-rectangle",
          "background-color": "#f6f7f9",
          "border-style": "dashed",
          "border-color": "#7d8795",
          color: "#3b4451",
          "font-style": "italic",
        },
      },
      {
        selector: "node[kind = 'hidden']",
        style: { shape: "round-rectangle", "background-color": "#f1f4f8", "border-color": "#8a94a3", "border-style": "dashed", color: "#5b6573", "font-style": "italic" },
      },
      {
        selector: "node[?start]",
        style: { "border-width": 3, "font-weight": "bold", "underlay-color": "#1f5fbf", "underlay-padding": 5, "underlay-opacity": 0.18, "underlay-shape": "round-rectangle" },
      },
      {
        selector: "node[?missing], node[?dropped]",
        style: { "border-style": "dotted", opacity: 0.7 },
      },
      {
        selector: ":parent",
        style: {
          "text-valign": "top",
          "text-halign": "center",
          "text-margin-y": -4,
          "font-weight": "bold",
          "background-opacity": 0.4,
          color: "#1d2430",
          "underlay-opacity": 0,
          padding: 10,
          "text-max-width": 400,
        },
      },
      {
        selector: "node[?violation]",
        style: { "border-color": "#a4262c", "border-width": 3, "border-style": "double" },
      },
      {
        selector: "node:selected",
        style: { "overlay-color": "#1f5fbf", "overlay-opacity": 0.14, "overlay-padding": 6 },
      },
      {
        selector: "node:parent:selected",
        style: { "overlay-opacity": 0.05 },
      },
      {
        selector: "edge",
        style: {
          width: 1.6,
          "curve-style": "bezier",
          "line-color": "#8a94a3",
          "target-arrow-color": "#8a94a3",
          "target-arrow-shape": "triangle",
          "arrow-scale": 0.9,
        },
      },
      {
        // A big graph draws straight edges: bezier routing of thousands of edges is what freezes panning.
        selector: "edge.straight",
        style: { "curve-style": "straight", width: 1, "arrow-scale": 0.7 },
      },
      {
        selector: "edge[level = 'column']",
        style: { width: 1.2, "line-color": "#5b6574", "target-arrow-color": "#5b6574" },
      },
      {
        selector: "edge[?masking]",
        style: { "line-style": "dashed", "line-dash-pattern": [6, 4], "line-color": "#7b4fa8", "target-arrow-color": "#7b4fa8" },
      },
      {
        selector: "edge[!direct]",
        style: { "line-style": "dotted", opacity: 0.7 },
      },
      {
        selector: "edge[?violation]",
        style: { "line-color": "#a4262c", "target-arrow-color": "#a4262c", width: 2.2 },
      },
      {
        selector: "edge[?faded]",
        style: { opacity: 0.25 },
      },
      {
        selector: "edge:selected",
        style: { "line-color": "#1f5fbf", "target-arrow-color": "#1f5fbf", width: 3 },
      },
    ];
    Object.keys(SENSITIVITY).forEach(function (name) {
      var colours = SENSITIVITY[name];
      style.splice(3, 0, {
        selector: "node[sens = '" + name + "']",
        style: { "background-color": colours.fill, "border-color": colours.border, color: colours.text },
      });
    });
    return style;
  }

  function nodeKey(node) {
    return node.kind === "dataset" && node.dataset ? "d" + node.dataset.id : "n" + node.id;
  }

  // Node widths follow their labels, measured in the fonts the graph draws them with.
  var measure = document.createElement("canvas").getContext("2d");

  function labelWidth(label, kind, bold) {
    measure.font = (bold ? "bold " : "") + (kind === "column" ? "11px monospace" : "12px system-ui, sans-serif");
    var max = kind === "column" ? 220 : 320;
    var width = Math.min(max, Math.max(60, Math.ceil(measure.measureText(label).width) + 26));
    return { width: width, textWidth: width - 14 };
  }

  function nodeData(node, startIds) {
    // A node of a dataset the reader may not see keeps its place but shows nothing of it.
    var label = node.hidden ? node.label : node.kind === "column" ? node.column.name : node.dataset && node.kind === "dataset" ? node.dataset.qualifiedName : node.label;
    var shown = node.violation ? "⚠ " + label : label;
    var start = startIds.has(node.id) && node.kind === "dataset";
    var size = labelWidth(shown, node.kind, start);
    var sensitivity = node.effectiveSensitivity || node.sensitivity;
    return {
      id: nodeKey(node),
      nodeId: node.id,
      kind: node.hidden ? "hidden" : node.kind,
      sourceHidden: node.hidden && node.kind === "source",
      label: shown,
      fullLabel: label,
      width: size.width,
      textWidth: size.textWidth,
      sens: sensitivity ? sensitivity.toLowerCase() : node.kind === "source" || node.hidden ? undefined : "unknown",
      declared: node.sensitivity,
      effective: node.effectiveSensitivity,
      protection: node.protection,
      violation: !!node.violation,
      depth: node.depth,
      start: start,
      datasetId: node.dataset ? node.dataset.id : null,
      datasetName: node.dataset ? node.dataset.qualifiedName : null,
      url: node.dataset ? node.dataset.url : null,
      status: node.dataset ? node.dataset.status : null,
      needsReview: node.dataset ? node.dataset.needsReview : false,
      owners: node.owners || [],
      columnId: node.column ? node.column.id : null,
      columnType: node.column ? node.column.type : null,
      inCurrentVersion: node.column ? node.column.inCurrentVersion : null,
      dropped: node.column ? !node.column.inCurrentVersion : false,
      sourceKind: node.sourceKind,
    };
  }

  function edgeData(edge, keys) {
    return {
      id: "e" + edge.id,
      source: keys[edge.source],
      target: keys[edge.target],
      edgeId: edge.id,
      level: edge.level,
      kind: edge.kind,
      direct: edge.direct,
      masking: edge.masking,
      description: edge.description,
      job: edge.job,
      lastSeen: edge.lastSeen,
      firstSeen: edge.firstSeen,
    };
  }

  function fetchGraph(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (response) {
      if (!response.ok) {
        throw new Error("The lineage API answered " + response.status + ".");
      }
      return response.json();
    });
  }

  function query(extra) {
    var params = new URLSearchParams({ direction: current.direction, depth: String(current.depth) });
    if (container.dataset.graphLimit) {
      params.set("limit", container.dataset.graphLimit);
    }
    Object.keys(extra || {}).forEach(function (key) {
      params.set(key, extra[key]);
    });
    return "?" + params.toString();
  }

  // --- loading -----------------------------------------------------------------------
  function load() {
    var mine = ++generation;
    setState("loading", "Loading lineage …");
    hidePanel();
    return fetchGraph(container.dataset.graphUrl + query({ level: "dataset" }))
      .then(function (graph) {
        if (mine !== generation) {
          return;
        }
        cy.elements().remove();
        var starts = new Set(graph.starts);
        var keys = {};
        var elements = graph.nodes.map(function (node) {
          keys[node.id] = nodeKey(node);
          return { group: "nodes", data: nodeData(node, starts) };
        });
        graph.edges.forEach(function (edge) {
          if (keys[edge.source] && keys[edge.target]) {
            elements.push({ group: "edges", data: edgeData(edge, keys) });
          }
        });
        cy.add(elements);
        var partial = graph.partial;
        var again = Array.from(expanded).filter(function (id) {
          return cy.getElementById("d" + id).nonempty();
        });
        expanded = new Set();
        return Promise.all(again.map(function (id) { return addColumns(id, mine); })).then(function (results) {
          if (mine !== generation) {
            return;
          }
          partial = partial || results.some(Boolean);
          render(partial);
        });
      })
      .catch(function (error) {
        if (mine !== generation) {
          return;
        }
        cy.elements().remove();
        setState("error", ["The lineage graph could not be loaded (" + error.message + "). ", el("button", { type: "button", className: "btn btn-small", text: "Try again", onclick: load })]);
        updateCounts();
      });
  }

  function render(partial) {
    partialNotice.hidden = !partial;
    var onlyStart = cy.nodes().length <= 1 && cy.edges().length === 0;
    if (onlyStart) {
      cy.elements().remove();
      var where = current.direction === "both" ? "" : current.direction + " ";
      setState("empty", [el("strong", { text: "No lineage " + where + "yet." }), " Nothing is recorded as flowing into or out of this dataset within " + hops(current.depth) + "."]);
      tools.hidden = true;
      updateCounts();
      return;
    }
    layout();
    setState("ready");
    tools.hidden = false;
    updateCounts();
  }

  // Below this zoom labels are unreadable: a big graph opens on the node in focus instead.
  var READABLE_ZOOM = 0.45;
  var zoomedIn = false;

  // Above this many nodes dagre (crossing minimisation, quadratic and worse) freezes the page for
  // seconds: the graph is laid out in columns by hop count instead, in one pass.
  var LAYERED_ABOVE = 400;

  // Columns by hop count, left to right; a column taller than a few dozen rows is wrapped into a
  // block of sub-columns, so the whole graph keeps a shape that fits the view. Within a column,
  // nodes follow the mean place of their neighbours one hop nearer the start (one barycentre
  // pass), then their label, so edges stay short. Linear in nodes and edges.
  function layeredLayout() {
    // Plain maps, not Cytoscape collections: a collection per node (neighbourhood, position)
    // costs more than the whole layout on thousands of nodes.
    var depthOf = new Map();
    var widthOf = new Map();
    var columns = new Map();
    cy.nodes().forEach(function (node) {
      var id = node.id();
      var depth = node.data("depth") || 0;
      depthOf.set(id, depth);
      widthOf.set(id, node.data("width"));
      if (!columns.has(depth)) {
        columns.set(depth, []);
      }
      columns.get(depth).push({ id: id, label: String(node.data("fullLabel")) });
    });
    var neighbours = new Map();
    cy.edges().forEach(function (edge) {
      var source = edge.data("source");
      var target = edge.data("target");
      if (!neighbours.has(source)) { neighbours.set(source, []); }
      if (!neighbours.has(target)) { neighbours.set(target, []); }
      neighbours.get(source).push(target);
      neighbours.get(target).push(source);
    });
    var rank = new Map(); // node id -> place in its column, 0 to 1
    Array.from(columns.keys()).sort(function (a, b) { return Math.abs(a) - Math.abs(b); }).forEach(function (depth) {
      var nearer = depth > 0 ? depth - 1 : depth + 1;
      var keyed = columns.get(depth).map(function (entry) {
        var total = 0;
        var count = 0;
        if (depth !== 0) {
          (neighbours.get(entry.id) || []).forEach(function (other) {
            if (depthOf.get(other) === nearer && rank.has(other)) {
              total += rank.get(other);
              count += 1;
            }
          });
        }
        return { id: entry.id, key: count ? total / count : 0.5, label: entry.label };
      });
      keyed.sort(function (a, b) { return a.key - b.key || (a.label < b.label ? -1 : a.label > b.label ? 1 : 0); });
      keyed.forEach(function (entry, index) {
        rank.set(entry.id, keyed.length > 1 ? index / (keyed.length - 1) : 0.5);
      });
      columns.set(depth, keyed);
    });
    var ROW = 44;
    var x = 0;
    var placed = new Map();
    var top = 0;
    var bottom = 0;
    Array.from(columns.keys()).sort(function (a, b) { return a - b; }).forEach(function (depth) {
      var column = columns.get(depth);
      var widest = 0;
      column.forEach(function (entry) { widest = Math.max(widest, widthOf.get(entry.id)); });
      var subColumns = column.length > 40 ? Math.ceil(Math.sqrt(column.length / 6)) : 1;
      var rows = Math.ceil(column.length / subColumns);
      column.forEach(function (entry, index) {
        var sub = Math.floor(index / rows);
        var row = index % rows;
        placed.set(entry.id, { x: x + sub * (widest + 24) + widest / 2, y: (row - (rows - 1) / 2) * ROW });
      });
      top = Math.min(top, -(rows - 1) / 2 * ROW);
      bottom = Math.max(bottom, (rows - 1) / 2 * ROW);
      x += subColumns * (widest + 24) + 120;
    });
    cy.startBatch();
    cy.nodes().positions(function (node) { return placed.get(node.id()); });
    cy.edges().addClass("straight");
    cy.endBatch();
    // The zoom that fits the positions just given (nodes are at most 34 px high). Only when the
    // whole graph is readable at that zoom is it shown fitted (``cy.fit`` measures every label's
    // box first: seconds on thousands of nodes); else ``layout`` opens on the node in focus anyway.
    var padding = 24;
    var boxWidth = Math.max(x - 120, 1);
    var boxHeight = bottom - top + 34;
    var zoom = Math.min((cy.width() - 2 * padding) / boxWidth, (cy.height() - 2 * padding) / boxHeight);
    zoom = Math.max(cy.minZoom(), Math.min(cy.maxZoom(), zoom));
    if (zoom >= READABLE_ZOOM) {
      cy.fit(undefined, padding);
      return;
    }
    cy.viewport({ zoom: zoom, pan: { x: cy.width() / 2 - zoom * boxWidth / 2, y: cy.height() / 2 - zoom * (top + bottom) / 2 } });
  }

  function layout(focus) {
    var began = performance.now();
    container.dataset.layout = cy.nodes().length > LAYERED_ABOVE && cy.nodes(":parent").empty() ? "layered" : "dagre";
    if (container.dataset.layout === "layered") {
      layeredLayout();
    } else {
      cy.edges().removeClass("straight");
      runDagre();
    }
    if (cy.zoom() > 1.4) {
      cy.zoom(1.4);
      cy.center();
    }
    var target = focus && focus.nonempty() ? focus : cy.nodes("[?start]");
    zoomedIn = cy.zoom() < READABLE_ZOOM && target.nonempty();
    if (zoomedIn) {
      cy.zoom(0.8);
      cy.center(target);
    }
    container.dataset.layoutMs = String(Math.round(performance.now() - began)); // read by bench/graph_page.py
  }

  function runDagre() {
    cy.layout({
      name: "dagre",
      rankDir: "LR",
      nodeSep: 14,
      rankSep: 80,
      edgeSep: 8,
      fit: true,
      padding: 24,
      animate: false,
    }).run();
  }

  function updateCounts() {
    var datasets = cy.nodes("[kind = 'dataset']").length;
    var columns = cy.nodes("[kind = 'column']").length;
    var sources = cy.nodes("[kind = 'source']").length;
    container.dataset.nodeCount = String(cy.nodes().length);
    container.dataset.edgeCount = String(cy.edges().length);
    var parts = [datasets + " dataset" + (datasets === 1 ? "" : "s")];
    if (sources) {
      parts.push(sources + " external source" + (sources === 1 ? "" : "s"));
    }
    if (columns) {
      parts.push(columns + " column" + (columns === 1 ? "" : "s"));
    }
    var hidden = cy.nodes("[kind = 'hidden']").length;
    if (hidden) {
      parts.push(hidden + " you may not see");
    }
    countLabel.textContent = cy.nodes().length ? parts.join(" · ") + (zoomedIn ? " · zoomed in: fit to view to see all" : "") : "";
  }

  // --- columns -------------------------------------------------------------------------
  function ensureDatasetNode(dataset) {
    var key = "d" + dataset.id;
    var existing = cy.getElementById(key);
    if (existing.nonempty()) {
      return existing;
    }
    // A dataset the dataset-level walk did not reach (a different depth, or the cap).
    var size = labelWidth(dataset.qualifiedName, "dataset");
    return cy.add({
      group: "nodes",
      data: {
        id: key, kind: "dataset", label: dataset.qualifiedName, fullLabel: dataset.qualifiedName, width: size.width,
        textWidth: size.textWidth, sens: "unknown", datasetId: dataset.id, datasetName: dataset.qualifiedName,
        url: dataset.url, status: dataset.status, needsReview: dataset.needsReview, owners: [], missing: true,
      },
    });
  }

  // Adds the column-level lineage of one dataset; resolves to true when it was cut short.
  function addColumns(datasetId, mine) {
    var url = urlFor(container.dataset.datasetLineageUrl, datasetId) + query({ level: "column" });
    return fetchGraph(url).then(function (graph) {
      if (mine !== generation) {
        return false;
      }
      var starts = new Set(graph.starts);
      var keys = {};
      var elements = [];
      graph.nodes.forEach(function (node) {
        var key = nodeKey(node);
        keys[node.id] = key;
        if (cy.getElementById(key).nonempty()) {
          return;
        }
        var data = nodeData(node, starts);
        if (node.kind === "column" && node.dataset) {
          data.parent = ensureDatasetNode(node.dataset).id();
        } else if (node.kind === "dataset") {
          data.missing = true;
        }
        elements.push({ group: "nodes", data: data });
      });
      graph.edges.forEach(function (edge) {
        var data = edgeData(edge, keys);
        if (data.source && data.target && cy.getElementById(data.id).empty()) {
          elements.push({ group: "edges", data: data });
        }
      });
      cy.add(elements);
      // A column edge into a violation is the step that causes it.
      cy.edges("[level = 'column']").forEach(function (edge) {
        edge.data("violation", !!edge.target().data("violation") && !edge.data("masking") && edge.data("direct") !== false);
      });
      expanded.add(datasetId);
      fadeCoveredDatasetEdges();
      return graph.partial;
    });
  }

  // Where column edges show how data flows between two nodes, their dataset edge steps back.
  function fadeCoveredDatasetEdges() {
    cy.edges("[level = 'dataset']").forEach(function (edge) {
      var from = edge.source().union(edge.source().descendants());
      var to = edge.target().union(edge.target().descendants());
      edge.data("faded", from.edgesTo(to).filter("[level = 'column']").nonempty());
    });
  }

  function expand(datasetId) {
    var mine = generation;
    setBusy(true);
    return addColumns(datasetId, mine)
      .then(function (partial) {
        if (mine !== generation) {
          return;
        }
        partialNotice.hidden = partialNotice.hidden && !partial;
        var node = cy.getElementById("d" + datasetId);
        layout(node);
        updateCounts();
        if (node.nonempty()) {
          showPanel(node);
        }
      })
      .catch(function (error) {
        panel.appendChild(el("p", { className: "field-error", text: "The columns could not be loaded (" + error.message + ")." }));
      })
      .finally(function () {
        setBusy(false);
      });
  }

  function collapse(datasetId) {
    var parent = cy.getElementById("d" + datasetId);
    var children = parent.children();
    // Columns of other datasets that only this expansion brought in go too.
    var stale = children.union(children.connectedEdges());
    cy.remove(stale);
    expanded.delete(datasetId);
    cy.nodes("[kind = 'column']").forEach(function (column) {
      if (column.connectedEdges().empty() && !expanded.has(column.data("datasetId"))) {
        cy.remove(column);
      }
    });
    cy.nodes("[?missing]").forEach(function (node) {
      if (node.isChildless() && node.connectedEdges().empty()) {
        cy.remove(node);
      }
    });
    fadeCoveredDatasetEdges();
    layout(parent);
    updateCounts();
    showPanel(parent);
  }

  function setBusy(busy) {
    container.dataset.busy = busy ? "true" : "false";
    panel.querySelectorAll("button[data-action='columns']").forEach(function (button) {
      button.disabled = busy;
    });
  }

  // --- the info panel ---------------------------------------------------------------
  function hidePanel() {
    panel.hidden = true;
    panel.replaceChildren();
  }

  function describeDepth(data) {
    if (data.depth === 0 && data.datasetId === pageDatasetId) {
      return "This dataset";
    }
    if (data.depth === undefined || data.depth === null) {
      return null;
    }
    return (data.depth < 0 ? "Upstream, " : "Downstream, ") + hops(data.depth);
  }

  function edgeEnd(node) {
    return node.data("kind") === "column" ? node.data("datasetName") + "." + node.data("fullLabel") : node.data("fullLabel");
  }

  function showPanel(target) {
    var data = target.data();
    var body = [];
    var close = el("button", { type: "button", className: "lineage-panel-close", "aria-label": "Close details", text: "×", onclick: function () { cy.elements().unselect(); hidePanel(); } });
    if (target.isEdge()) {
      body.push(el("h3", { text: (EDGE_KINDS[data.kind] || data.kind) + (data.masking ? " (masking)" : "") }));
      body.push(el("p", { className: "mono small" }, [dotted(edgeEnd(target.source())), " → ", dotted(edgeEnd(target.target()))]));
      var facts = el("dl", { className: "lineage-panel-facts" });
      facts.append(el("dt", { text: "Carries values" }), el("dd", { text: data.direct === false ? "No (indirect: filter, join …)" : "Yes" }));
      if (data.job) {
        facts.append(el("dt", { text: "Job" }), el("dd", { className: "mono", text: data.job }));
      }
      if (data.description) {
        facts.append(el("dt", { text: "How" }), el("dd", { text: data.description }));
      }
      if (data.lastSeen) {
        facts.append(el("dt", { text: "Last seen" }), el("dd", { text: new Date(data.lastSeen).toLocaleString() }));
      }
      body.push(facts);
    } else if (data.kind === "hidden") {
      body.push(el("h3", { text: data.fullLabel }));
      body.push(el("p", { text: data.sourceHidden
        ? "This source feeds only datasets your roles do not let you see, so its name is left out. Data flows through it all the same."
        : "Your roles do not let you see this dataset, so its name, columns and owners are left out. Data flows through it all the same." }));
      var at = describeDepth(data);
      if (at) {
        body.push(el("p", { className: "muted small", text: at }));
      }
    } else if (data.kind === "source") {
      body.push(el("h3", { className: "mono", text: data.fullLabel }));
      body.push(el("p", { text: "External source: not a registered dataset. If a dataset with this name is registered in a store of this kind, lineage links to it instead." }));
      var where = describeDepth(data);
      if (where) {
        body.push(el("p", { className: "muted small", text: where }));
      }
    } else if (data.kind === "column") {
      body.push(el("h3", { className: "mono" }, [dotted(data.datasetName + ".", "muted"), data.fullLabel]));
      body.push(el("p", { className: "lineage-panel-badges" }, [
        data.columnType ? el("span", { className: "mono small", text: data.columnType }) : null,
        badge(data.declared, "Declared sensitivity"),
        data.effective && data.effective !== data.declared ? el("span", { className: "effective" }, ["→ ", badge(data.effective, "Effective sensitivity"), " ", el("span", { className: "muted small", text: "effective" })]) : null,
        data.protection ? el("span", { className: "badge prot-" + data.protection.toLowerCase(), text: data.protection }) : null,
      ]));
      if (data.violation) {
        body.push(el("p", {}, [el("a", { className: "violation-flag", href: container.dataset.violationsUrl, text: "Violation" }), " More sensitive data flows in unprotected than the column is declared."]));
      }
      if (data.inCurrentVersion === false) {
        body.push(el("p", { className: "muted small", text: "Not in the dataset's current version (dropped, or not registered yet)." }));
      }
      var links = el("p", { className: "lineage-panel-actions" });
      if (data.columnId) {
        links.append(el("a", { className: "btn btn-small", href: urlFor(container.dataset.impactUrl, data.datasetId, data.columnId), text: "Downstream impact" }));
      }
      if (data.url) {
        links.append(el("a", { className: "btn btn-small", href: data.url, text: "Open dataset" }));
      }
      body.push(links);
    } else {
      body.push(el("h3", { className: "mono" }, [dotted(data.fullLabel)]));
      var line = el("p", { className: "lineage-panel-badges" }, [
        describeDepth(data) ? el("span", { className: "muted small", text: describeDepth(data) }) : null,
        badge(data.declared, "Declared: highest sensitivity of its columns"),
        data.effective && data.effective !== data.declared
          ? el("span", { className: "effective" }, ["→ ", badge(data.effective, "Effective sensitivity: what flows in from upstream"), " ", el("span", { className: "muted small", text: "effective" })])
          : null,
        data.status === "deprecated" ? el("span", { className: "status status-deprecated", text: "Deprecated" }) : null,
        data.needsReview ? el("span", { className: "tag", text: "needs review" }) : null,
      ]);
      body.push(line);
      if (data.owners && data.owners.length) {
        body.push(el("p", { className: "small" }, [el("span", { className: "muted", text: "Owners: " }), data.owners.join(", ")]));
      } else if (!data.missing) {
        body.push(el("p", { className: "small muted", text: "No owners" }));
      }
      var actions = el("p", { className: "lineage-panel-actions" });
      var isExpanded = expanded.has(data.datasetId);
      actions.append(el("button", {
        type: "button",
        className: "btn btn-small",
        "data-action": "columns",
        text: isExpanded ? "Collapse columns" : "Expand columns",
        onclick: function () {
          return isExpanded ? collapse(data.datasetId) : expand(data.datasetId);
        },
      }));
      if (data.url && data.datasetId !== pageDatasetId) {
        actions.append(el("a", { className: "btn btn-small btn-primary", href: data.url, text: "Open dataset" }));
      }
      body.push(actions);
    }
    panel.replaceChildren.apply(panel, [close].concat(body));
    panel.hidden = false;
  }

  cy.on("tap", "node, edge", function (event) {
    showPanel(event.target);
  });
  cy.on("tap", function (event) {
    if (event.target === cy) {
      hidePanel();
    }
  });
  cy.on("dbltap", "node", function (event) {
    var url = event.target.data("url");
    if (url && event.target.data("datasetId") !== pageDatasetId) {
      window.location.assign(url);
    }
  });
  cy.on("mouseover", "node, edge", function () {
    container.style.cursor = "pointer";
  });
  cy.on("mouseout", "node, edge", function () {
    container.style.cursor = "";
  });

  // --- finding a node by name: Enter selects the next match, centres it and opens its details ---
  var found = { text: "", index: -1 };

  function findNext(text) {
    var needle = text.trim().toLowerCase();
    var status = box.querySelector(".lineage-graph-find-status");
    if (!needle) {
      status.textContent = "";
      return;
    }
    var matches = cy.nodes().filter(function (node) {
      return node.data("kind") !== "hidden" && String(node.data("fullLabel")).toLowerCase().indexOf(needle) !== -1;
    }).sort(function (a, b) { return (a.data("depth") || 0) - (b.data("depth") || 0); });
    if (matches.empty()) {
      status.textContent = "No node matches";
      return;
    }
    found.index = found.text === needle ? (found.index + 1) % matches.length : 0;
    found.text = needle;
    var node = matches[found.index];
    cy.elements().unselect();
    node.select();
    cy.zoom(Math.max(cy.zoom(), 0.8));
    cy.center(node);
    zoomedIn = true;
    updateCounts();
    showPanel(node);
    status.textContent = (found.index + 1) + " of " + matches.length;
  }

  if (finder) {
    finder.addEventListener("keydown", function (event) {
      if (event.key === "Enter") {
        event.preventDefault();
        findNext(finder.value);
      }
    });
  }

  tools.querySelector("[data-action='fit']").addEventListener("click", function () {
    cy.fit(undefined, 24);
    zoomedIn = false;
    updateCounts();
  });

  // --- controls ------------------------------------------------------------------------
  function readControls() {
    if (!form) {
      return;
    }
    current.direction = form.elements.direction.value;
    current.depth = Number(form.elements.depth.value);
  }

  if (form) {
    form.querySelectorAll("[data-no-js]").forEach(function (button) {
      button.hidden = true;
    });
    form.addEventListener("change", function () {
      readControls();
      var url = new URL(window.location.href);
      url.searchParams.set("direction", current.direction);
      url.searchParams.set("depth", String(current.depth));
      window.history.replaceState(window.history.state, "", url);
      load();
    });
  }
  readControls();
  load();
})();
