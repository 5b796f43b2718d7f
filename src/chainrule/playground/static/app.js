// chainrule playground: the page. It draws what the Python session sends (JSON messages and
// binary frames over one WebSocket) and sends back the user's commands. Canvas 2D only.
"use strict";

(function () {
  const TOKEN = new URLSearchParams(location.search).get("token") || "";
  const ORANGE = [245, 147, 34];
  const BLUE = [8, 119, 189];
  const WHITE = [232, 234, 235];
  const CLASS_COLOURS = [ORANGE, BLUE, [46, 160, 67], [142, 68, 173], [214, 39, 40], [140, 86, 75]];
  const FEATURE_LABELS = {
    x1: "x\u2081", x2: "x\u2082", x1sq: "x\u2081\u00b2", x2sq: "x\u2082\u00b2",
    x1x2: "x\u2081x\u2082", sinx1: "sin x\u2081", sinx2: "sin x\u2082",
  };
  const FEATURE_FN = {
    x1: (a, b) => a, x2: (a, b) => b, x1sq: (a, b) => a * a, x2sq: (a, b) => b * b,
    x1x2: (a, b) => a * b, sinx1: (a, b) => Math.sin(a), sinx2: (a, b) => Math.sin(b),
  };
  const $ = (id) => document.getElementById(id);

  // ----- what the page knows -----
  const pg = {
    state: null, hash: "", data: null, network: null, frame: null, arrays: null,
    history: [], playing: false, framesReceived: 0, fps: 0, ready: false,
    layout: null, lastExplain: null, lastNeuron: null, errors: [],
  };
  window.playground = pg;

  // ----- the WebSocket -----
  let ws = null;
  let nextId = 1;
  const pending = new Map();

  function request(type, args) {
    return new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify(Object.assign({ id, type }, args || {})));
    });
  }

  function showError(message) {
    pg.errors.push(message);
    $("error").textContent = message;
  }

  function connect() {
    ws = new WebSocket(`ws://${location.host}/ws?token=${encodeURIComponent(TOKEN)}`);
    ws.binaryType = "arraybuffer";
    ws.onopen = async () => {
      const hash = location.hash.replace(/^#/, "");
      try {
        if (hash) applyReply(await request("set_hash", { hash }));
        else applyReply(await request("hello"));
      } catch (err) {
        showError(`the link's setup was refused: ${err.message}`);
        applyReply(await request("hello"));
      }
      pg.ready = true;
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== "string") return onFrame(ev.data);
      const msg = JSON.parse(ev.data);
      if (msg.id != null && pending.has(msg.id)) {
        const p = pending.get(msg.id);
        pending.delete(msg.id);
        if (msg.error) p.reject(new Error(msg.error));
        else p.resolve(msg.reply);
      } else if (msg.error) {
        showError(msg.error);
      }
    };
    ws.onclose = () => { $("error").textContent = "the connection to the playground server is closed"; };
  }

  async function command(type, args) {
    try {
      const reply = await request(type, args);
      applyReply(reply);
      $("error").textContent = "";
      return reply;
    } catch (err) {
      showError(err.message);
      applyReply(await request("hello"));  // the controls show what the server kept
      return null;
    }
  }

  // ----- replies -----
  function applyReply(r) {
    if (!r) return;
    if (r.type === "hello") {
      pg.data = r.data;
      pg.network = r.network;
      pg.history = (r.history || []).map((h) => ({ step: h[0], train: h[1], test: h[2] }));
      pg.frame = null;
      pg.arrays = null;
      pg.lastExplain = null;
      $("explain").hidden = true;
      $("neuron").hidden = true;
      setPlaying(r.playing);
      applyState(r.state, r.hash);
      buildFeatureControls();
      buildViewPicker();
      layoutNetwork();
    } else if (r.type === "state") {
      pg.network = r.network;
      applyState(r.state, r.hash);
    } else if (r.type === "playing") {
      setPlaying(r.playing);
    }
    draw();
  }

  function setPlaying(on) {
    pg.playing = !!on;
    $("play").classList.toggle("playing", pg.playing);
    $("play").innerHTML = pg.playing ? "&#10074;&#10074;" : "&#9654;";
  }

  let ownHash = "";
  function applyState(state, hash) {
    pg.state = state;
    pg.hash = hash;
    ownHash = hash;
    if (location.hash.replace(/^#/, "") !== hash) history.replaceState(null, "", "#" + hash);
    setSelect("lr", String(state.lr));
    setSelect("activation", state.activation);
    setSelect("optimizer", state.optimizer);
    setSelect("reg", state.reg);
    setSelect("regRate", String(state.regRate));
    setSelect("problem", state.problem);
    setSelect("classes", String(state.classes));
    for (const k of ["ratio", "noise", "batchSize"]) {
      $(k).value = state[k];
      $(k + "-value").textContent = state[k];
    }
    const csv = state.dataset === "csv";
    for (const b of document.querySelectorAll(".dataset")) {
      b.classList.toggle("selected", b.dataset.name === state.dataset);
    }
    $("classes").disabled = csv || state.problem !== "classification";
    $("noise").disabled = csv;
    $("problem").disabled = csv;
    $("data-source").textContent = csv && pg.data ? `training on ${pg.data.source}` : "";
    const n = state.layers.length;
    $("layer-count").textContent = `${n} hidden layer${n === 1 ? "" : "s"}`;
    $("export-data").setAttribute("download", `playground-${state.dataset}.csv`);
  }

  function setSelect(id, value) {
    const el = $(id);
    const norm = (v) => String(Number(v));
    let found = false;
    for (const o of el.options) {
      const v = o.value;
      if (v === value || (!isNaN(Number(v)) && !isNaN(Number(value)) && norm(v) === norm(value))) {
        el.value = v;
        found = true;
      }
    }
    if (!found) {  // a value from a link that the menu does not list
      const o = document.createElement("option");
      o.value = o.textContent = value;
      el.appendChild(o);
      el.value = value;
    }
  }

  window.addEventListener("hashchange", () => {
    const hash = location.hash.replace(/^#/, "");
    if (hash && hash !== ownHash) command("set_hash", { hash });
  });

  // ----- frames -----
  let fpsCount = 0;
  let fpsStart = performance.now();

  function onFrame(buffer) {
    const view = new DataView(buffer);
    const magic = String.fromCharCode(view.getUint8(0), view.getUint8(1), view.getUint8(2), view.getUint8(3));
    if (magic !== "CRPF") return;
    const n = view.getUint32(4, true);
    const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 8, n)));
    const payload = new Float32Array(buffer, 8 + n);
    const arrays = {};
    for (const [name, [off, len]] of Object.entries(header.arrays)) arrays[name] = payload.subarray(off, off + len);
    pg.frame = header;
    pg.arrays = arrays;
    pg.framesReceived++;
    fpsCount++;
    const now = performance.now();
    if (now - fpsStart >= 1000) {
      pg.fps = (fpsCount * 1000) / (now - fpsStart);
      fpsCount = 0;
      fpsStart = now;
    }
    const last = pg.history[pg.history.length - 1];
    if (!last || last.step !== header.step) {
      pg.history.push({ step: header.step, train: header.trainLoss, test: header.testLoss });
      if (pg.history.length > 2000) pg.history.splice(0, pg.history.length - 2000);
    } else {
      last.train = header.trainLoss;
      last.test = header.testLoss;
    }
    if (pg.playing !== header.playing) setPlaying(header.playing);
    scheduleDraw();
  }

  let drawPending = false;
  function scheduleDraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(() => { drawPending = false; draw(); });
  }

  // ----- colours -----
  function mix(a, b, t) {
    return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
  }
  function diverging(v) {  // -1 orange, 0 white, +1 blue
    if (!isFinite(v)) return [0, 0, 0];
    v = Math.max(-1, Math.min(1, v));
    return v < 0 ? mix(WHITE, ORANGE, -v) : mix(WHITE, BLUE, v);
  }
  function rgb(c) { return `rgb(${c[0] | 0},${c[1] | 0},${c[2] | 0})`; }

  function heatImage(size, colourAt) {
    const c = document.createElement("canvas");
    c.width = c.height = size;
    const ctx = c.getContext("2d");
    const img = ctx.createImageData(size, size);
    for (let k = 0; k < size * size; k++) {
      const col = colourAt(k);
      img.data[4 * k] = col[0];
      img.data[4 * k + 1] = col[1];
      img.data[4 * k + 2] = col[2];
      img.data[4 * k + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    return c;
  }

  // ----- the network drawing -----
  const NODE = 34;
  function layoutNetwork() {
    const net = pg.network;
    if (!net) return;
    const canvas = $("network");
    const widths = [net.inputs.length, ...net.layers, net.outputs];
    const cols = widths.length;
    const csv = pg.data && pg.data.csv;
    const left = csv ? 100 : 60, right = canvas.width - (net.outputs > 1 ? 80 : 50);
    const xs = widths.map((_, c) => (cols === 1 ? left : left + ((right - left) * c) / (cols - 1)));
    const top = 16;
    const maxRows = Math.max(...widths);
    const gap = Math.min(16, (canvas.height - top - 10 - maxRows * NODE) / Math.max(1, maxRows - 1));
    const nodes = widths.map((w, c) => Array.from({ length: w }, (_, j) => ({
      x: xs[c] - NODE / 2, y: top + j * (NODE + Math.max(gap, 4)), col: c, unit: j,
    })));
    pg.layout = { widths, nodes, xs };
    // the +/- buttons of each hidden layer
    const lc = $("layer-controls");
    lc.innerHTML = "";
    net.layers.forEach((w, li) => {
      const div = document.createElement("div");
      div.className = "lc";
      div.style.left = xs[li + 1] + "px";
      div.innerHTML = `<button data-layer="${li}" data-delta="1" class="add-neuron">+</button>` +
        `<button data-layer="${li}" data-delta="-1" class="remove-neuron">&minus;</button>` +
        `<span>${w} neuron${w === 1 ? "" : "s"}</span>`;
      lc.appendChild(div);
    });
  }

  function weightAt(li, i, j) {
    // Linear weights are (in, out), row-major, layer after layer
    const w = pg.layout.widths;
    let off = 0;
    for (let k = 0; k < li; k++) off += w[k] * w[k + 1];
    return pg.arrays ? pg.arrays.weights[off + i * w[li + 1] + j] : 0;
  }

  function linkEnds(li, i, j) {
    const a = pg.layout.nodes[li][i], b = pg.layout.nodes[li + 1][j];
    return [a.x + NODE, a.y + NODE / 2, b.x, b.y + NODE / 2];
  }

  function neuronImage(col, unit) {
    const f = pg.frame, A = pg.arrays, net = pg.network;
    if (!f || !A) return null;
    if (col === 0) return inputImage(unit);
    const g = f.neuronGrid;
    if (col <= net.layers.length) {
      let off = 0;
      for (let k = 0; k < col - 1; k++) off += net.layers[k] * g * g;
      off += unit * g * g;
      const vals = A.neurons;
      return heatImage(g, (k) => diverging(vals[off + k]));
    }
    return outputImage(f.grid, unit);
  }

  const inputCache = {};
  function inputImage(unit) {
    const st = pg.state;
    if (!st || (pg.data && pg.data.csv)) return null;
    const name = st.features[unit];
    if (inputCache[name]) return inputCache[name];
    const g = 24, d = pg.data.domain;
    const vals = [];
    for (let r = 0; r < g; r++) for (let c = 0; c < g; c++) {
      const x = d[0] + ((d[1] - d[0]) * c) / (g - 1), y = d[3] - ((d[3] - d[2]) * r) / (g - 1);
      vals.push(FEATURE_FN[name](x, y));
    }
    const m = Math.max(...vals.map(Math.abs)) || 1;
    return (inputCache[name] = heatImage(g, (k) => diverging(vals[k] / m)));
  }

  function outputImage(g, unit, soft) {
    const A = pg.arrays, f = pg.frame, task = pg.network.task;
    const s = soft ? 0.65 : 1;  // the decision view is lighter, so that the points stand out
    if (task === "regression") return heatImage(g, (k) => diverging(s * A.output[k]));
    if (f.outputs === 1) return heatImage(g, (k) => diverging(s * (2 * A.output[k] - 1)));
    const K = f.outputs;
    if (unit != null) return heatImage(g, (k) => mix(WHITE, CLASS_COLOURS[unit % 6], A.output[unit * g * g + k]));
    return heatImage(g, (k) => {
      let best = 0, p = -1;
      for (let c = 0; c < K; c++) if (A.output[c * g * g + k] > p) { p = A.output[c * g * g + k]; best = c; }
      return mix(WHITE, CLASS_COLOURS[best % 6], s * Math.max(0, (p - 1 / K) / (1 - 1 / K)));
    });
  }

  function drawNetwork() {
    const canvas = $("network"), ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!pg.layout) return;
    const { nodes, widths } = pg.layout;
    // links first, under the nodes
    for (let li = 0; li < widths.length - 1; li++) {
      for (let i = 0; i < widths[li]; i++) for (let j = 0; j < widths[li + 1]; j++) {
        const w = weightAt(li, i, j);
        const [x0, y0, x1, y1] = linkEnds(li, i, j);
        ctx.strokeStyle = rgb(w >= 0 ? BLUE : ORANGE);
        ctx.globalAlpha = 0.35 + 0.65 * Math.min(1, Math.abs(w));
        ctx.lineWidth = Math.min(8, 0.5 + 1.5 * Math.abs(w));
        ctx.beginPath();
        ctx.moveTo(x0, y0);
        ctx.lineTo(x1, y1);
        ctx.stroke();
      }
    }
    ctx.globalAlpha = 1;
    const dead = new Set(((pg.frame && pg.frame.dead) || []).map((d) => `${d[0] + 1}:${d[1]}`));
    ctx.font = "11px system-ui, sans-serif";
    ctx.imageSmoothingEnabled = false;
    nodes.forEach((col, c) => col.forEach((n) => {
      const img = neuronImage(c, c === nodes.length - 1 && pg.frame && pg.frame.outputs > 1 ? n.unit : (c === nodes.length - 1 ? null : n.unit));
      ctx.fillStyle = "#fff";
      ctx.fillRect(n.x, n.y, NODE, NODE);
      if (img) ctx.drawImage(img, n.x, n.y, NODE, NODE);
      ctx.strokeStyle = dead.has(`${c}:${n.unit}`) ? "#b3261e" : "#555";
      ctx.lineWidth = dead.has(`${c}:${n.unit}`) ? 3 : 1;
      ctx.strokeRect(n.x, n.y, NODE, NODE);
      if (c === 0) {
        ctx.fillStyle = "#333";
        ctx.textAlign = "right";
        const label = pg.data && pg.data.csv ? pg.network.inputs[n.unit] : FEATURE_LABELS[pg.state.features[n.unit]];
        ctx.fillText(String(label).slice(0, 14), n.x - 4, n.y + NODE / 2 + 4);
      }
      if (c === nodes.length - 1 && pg.network.outputs > 1) {
        ctx.fillStyle = "#333";
        ctx.textAlign = "left";
        ctx.fillText(String(pg.network.classes[n.unit] ?? n.unit).slice(0, 11), n.x + NODE + 4, n.y + NODE / 2 + 4);
      }
    }));
    // the link explained last
    const e = pg.lastExplain;
    if (e && e.layer < widths.length - 1) {
      const [x0, y0, x1, y1] = linkEnds(e.layer, e.index[0], e.index[1]);
      ctx.strokeStyle = "#000";
      ctx.setLineDash([4, 3]);
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(x0, y0);
      ctx.lineTo(x1, y1);
      ctx.stroke();
      ctx.setLineDash([]);
    }
  }

  function segmentDistance(px, py, x0, y0, x1, y1) {
    const dx = x1 - x0, dy = y1 - y0;
    const t = Math.max(0, Math.min(1, ((px - x0) * dx + (py - y0) * dy) / (dx * dx + dy * dy || 1)));
    return Math.hypot(px - (x0 + t * dx), py - (y0 + t * dy));
  }

  function hitTest(px, py) {
    const { nodes, widths } = pg.layout;
    for (const col of nodes) for (const n of col) {
      if (px >= n.x && px <= n.x + NODE && py >= n.y && py <= n.y + NODE) return { kind: "neuron", col: n.col, unit: n.unit };
    }
    let best = null, bestD = 5;
    for (let li = 0; li < widths.length - 1; li++) {
      for (let i = 0; i < widths[li]; i++) for (let j = 0; j < widths[li + 1]; j++) {
        const d = segmentDistance(px, py, ...linkEnds(li, i, j));
        if (d < bestD) { bestD = d; best = { kind: "link", layer: li, i, j }; }
      }
    }
    return best;
  }

  // page coordinates of a point on a link (a third of the way: links cross at their middles)
  // and of a neuron's centre, for tests and guided tours
  pg.linkPoint = (li, i, j, t) => {
    const r = $("network").getBoundingClientRect();
    const [x0, y0, x1, y1] = linkEnds(li, i, j);
    const f = t == null ? 0.3 : t;
    return { x: r.left + x0 + f * (x1 - x0), y: r.top + y0 + f * (y1 - y0) };
  };
  pg.neuronPoint = (col, unit) => {
    const r = $("network").getBoundingClientRect();
    const n = pg.layout.nodes[col][unit];
    return { x: r.left + n.x + NODE / 2, y: r.top + n.y + NODE / 2 };
  };

  $("network").addEventListener("click", async (ev) => {
    if (!pg.layout) return;
    const r = ev.target.getBoundingClientRect();
    const hit = hitTest(ev.clientX - r.left, ev.clientY - r.top);
    if (!hit) return;
    if (hit.kind === "link") {
      try {
        showExplain(await request("explain", { layer: hit.layer, i: hit.i, j: hit.j }));
      } catch (err) { showError(err.message); }
    } else if (hit.col > 0) {
      try {
        showNeuron(await request("neuron", { layer: hit.col, j: hit.unit }));
      } catch (err) { showError(err.message); }
    }
  });

  // ----- the chain-rule panel -----
  function fmt(x, d) { return x == null ? "–" : Number(x).toPrecision(d || 4); }

  function showExplain(e) {
    pg.lastExplain = e;
    const box = $("explain");
    box.hidden = false;
    const [i, j] = e.index;
    const n = e.perSample.length;
    const rows = [];
    const show = Math.min(n, 8);
    for (let s = 0; s < show; s++) {
      rows.push(`<tr class="sample" data-row="${e.batch[s]}"><td>${e.batch[s]}</td>` +
        `<td data-value="${e.dC_da[s]}">${fmt(e.dC_da[s])}</td>` +
        `<td data-value="${e.da_dz[s]}">${fmt(e.da_dz[s])}</td>` +
        `<td data-value="${e.dz_dw[s]}">${fmt(e.dz_dw[s])}</td>` +
        `<td data-value="${e.perSample[s]}">${fmt(e.perSample[s])}</td></tr>`);
    }
    const layerName = e.layer === 0 ? "input" : `hidden layer ${e.layer}`;
    const target = e.isOutput ? "the output" : `hidden layer ${e.layer + 1}`;
    const reg = e.regularization ? `<p class="hint">The step also adds the ${e.regularization.toUpperCase()} penalty's gradient ` +
      `(${e.regularization === "l1" ? "λ·sign w" : "λ·w"}, λ = ${e.regRate}); the chain rule below is the data loss's part.</p>` : "";
    box.innerHTML = `<h3>Chain rule for w = ${e.weight}[${i},${j}]</h3>
      <p class="hint">${layerName} unit ${i} &rarr; ${target} unit ${j}; w = <span id="explain-value" data-value="${e.value}">${fmt(e.value, 6)}</span>;
      step ${e.step}, batch of ${n} row${n === 1 ? "" : "s"}</p>
      <p class="formula">∂C/∂w<sub>ij</sub> = Σ<sub>samples</sub> ∂C/∂a<sub>j</sub> · ∂a<sub>j</sub>/∂z<sub>j</sub> · ∂z<sub>j</sub>/∂w<sub>ij</sub>
        &nbsp;(a<sub>j</sub> = ${e.activation}(z<sub>j</sub>))</p>
      <table id="explain-table"><tr><th>row</th><th>∂C/∂a<sub>j</sub></th><th>∂a<sub>j</sub>/∂z<sub>j</sub></th><th>a<sub>i</sub></th><th>product</th></tr>
      ${rows.join("")}</table>
      ${n > show ? `<p class="hint">… ${n - show} more rows</p>` : ""}
      <p>sum over the batch: <b id="explain-total" data-value="${e.total}">${fmt(e.total, 8)}</b><br>
      engine gradient: <b id="explain-engine" data-value="${e.engineGrad}">${fmt(e.engineGrad, 8)}</b></p>
      ${reg}
      <details><summary>as <code>cr.explain</code> prints it</summary><pre id="explain-text"></pre></details>`;
    $("explain-text").textContent = e.text;
    box.dataset.batch = e.batch.join(",");
    box.dataset.step = e.step;
    draw();
  }

  function showNeuron(r) {
    pg.lastNeuron = r;
    const box = $("neuron");
    box.hidden = false;
    const where = r.layer <= pg.network.layers.length ? `hidden layer ${r.layer}, unit ${r.unit}` : `output ${r.unit}`;
    $("neuron-text").innerHTML = `<h3>Neuron: ${where}</h3>
      <p>activation over the training points: mean <b>${fmt(r.mean)}</b><br>
      gradient ∂C/∂a on the batch (${r.batch} rows): mean <b id="neuron-grad">${fmt(r.gradMean)}</b>, RMS ${fmt(r.gradRms)}<br>
      bias gradient ∂C/∂b: ${fmt(r.biasGrad)} (step ${r.step})</p>`;
    const c = $("histogram"), ctx = c.getContext("2d");
    ctx.clearRect(0, 0, c.width, c.height);
    const m = Math.max(...r.counts, 1), bw = c.width / r.counts.length;
    ctx.fillStyle = rgb(BLUE);
    r.counts.forEach((n, k) => { const h = ((c.height - 14) * n) / m; ctx.fillRect(k * bw + 1, c.height - 12 - h, bw - 2, h); });
    ctx.fillStyle = "#333";
    ctx.font = "10px system-ui";
    ctx.textAlign = "left";
    ctx.fillText(fmt(r.edges[0], 3), 0, c.height - 1);
    ctx.textAlign = "right";
    ctx.fillText(fmt(r.edges[r.edges.length - 1], 3), c.width, c.height - 1);
  }

  // ----- the output view -----
  function drawOutput() {
    const canvas = $("output"), ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const f = pg.frame, d = pg.data;
    if (f && pg.arrays) {
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(outputImage(f.grid, null, true), 0, 0, canvas.width, canvas.height);
    }
    if (!d) return;
    const [x0, x1, y0, y1] = d.domain;
    const px = (x) => ((x - x0) / (x1 - x0)) * canvas.width;
    const py = (y) => ((y1 - y) / (y1 - y0)) * canvas.height;
    const colour = (v) => d.task === "regression" ? rgb(diverging(v)) : rgb(CLASS_COLOURS[v % 6]);
    const sets = [[d.train, d.trainY, "#fff"]];
    if ($("show-test").checked) sets.push([d.test, d.testY, "#000"]);
    for (const [P, Y, stroke] of sets) {
      for (let k = 0; k < Y.length; k++) {
        ctx.beginPath();
        ctx.arc(px(P[2 * k]), py(P[2 * k + 1]), 3.2, 0, 2 * Math.PI);
        ctx.fillStyle = colour(Y[k]);
        ctx.fill();
        ctx.strokeStyle = stroke;
        ctx.lineWidth = 1;
        ctx.stroke();
      }
    }
  }

  function drawLossChart() {
    const c = $("loss-chart"), ctx = c.getContext("2d");
    ctx.clearRect(0, 0, c.width, c.height);
    const h = pg.history.filter((p) => p.train != null || p.test != null);
    if (h.length < 2) return;
    const vals = h.flatMap((p) => [p.train, p.test]).filter((v) => v != null && isFinite(v));
    const top = Math.max(...vals) || 1;
    const s0 = h[0].step, s1 = h[h.length - 1].step || 1;
    const X = (s) => ((s - s0) / Math.max(1, s1 - s0)) * (c.width - 2) + 1;
    const Y = (v) => c.height - 2 - (Math.min(v, top) / top) * (c.height - 6);
    for (const [key, colour] of [["train", "#999"], ["test", "#000"]]) {
      ctx.strokeStyle = colour;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      let started = false;
      for (const p of h) {
        if (p[key] == null) continue;
        if (!started) { ctx.moveTo(X(p.step), Y(p[key])); started = true; } else ctx.lineTo(X(p.step), Y(p[key]));
      }
      ctx.stroke();
    }
  }

  function drawNumbers() {
    const f = pg.frame;
    if (!f) return;
    $("step-count").textContent = f.step;
    $("epoch-count").textContent = f.epoch;
    $("test-loss").textContent = f.testLoss == null ? "NaN" : f.testLoss.toFixed(3);
    $("train-loss").textContent = f.trainLoss == null ? "NaN" : f.trainLoss.toFixed(3);
    $("test-loss").dataset.value = f.testLoss;
    $("train-loss").dataset.value = f.trainLoss;
    const w = $("warnings");
    const items = f.warnings.length ? f.warnings.map((t) => `<li>${escapeHtml(t)}</li>`) : ['<li class="ok">no problems seen</li>'];
    const html = items.join("");
    if (w.innerHTML !== html) w.innerHTML = html;
    const m = f.metrics || {};
    let out = "";
    if (m.trainAccuracy != null) {
      out += `<p>Accuracy: train <b id="train-accuracy">${(100 * m.trainAccuracy).toFixed(1)}%</b>, test <b id="test-accuracy">${m.testAccuracy == null ? "–" : (100 * m.testAccuracy).toFixed(1) + "%"}</b></p>`;
      const names = m.classes.length ? m.classes : m.confusion.map((_, k) => String(k));
      out += `<table id="confusion"><tr><th>true \\ predicted</th>${names.map((n) => `<th>${escapeHtml(n)}</th>`).join("")}</tr>` +
        m.confusion.map((row, k) => `<tr><th>${escapeHtml(names[k])}</th>${row.map((v) => `<td>${v}</td>`).join("")}</tr>`).join("") + "</table>";
    } else if (m.testR2 !== undefined) {
      out += `<p>R²: train <b>${fmt(m.trainR2, 3)}</b>, test <b id="test-r2">${fmt(m.testR2, 3)}</b></p>`;
    }
    if ($("metrics").innerHTML !== out) $("metrics").innerHTML = out;
    $("fps").textContent = `${pg.fps.toFixed(1)} frames/s · ${f.stepsPerSecond} steps/s`;
  }

  function escapeHtml(t) {
    return String(t).replace(/[&<>"]/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[ch]);
  }

  function draw() {
    if (!pg.network || !pg.state) return;  // a frame can arrive before the first reply
    drawNetwork();
    drawOutput();
    drawLossChart();
    drawNumbers();
  }

  // ----- controls -----
  function buildFeatureControls() {
    const box = $("features");
    box.innerHTML = "";
    if (!pg.state || pg.state.dataset === "csv") {
      box.innerHTML = `<span class="hint">inputs: the file's ${pg.network.inputs.length} columns (scaled as chainrule train does)</span>`;
      return;
    }
    for (const name of Object.keys(FEATURE_LABELS)) {
      const b = document.createElement("span");
      b.className = "feature" + (pg.state.features.includes(name) ? " on" : "");
      b.dataset.name = name;
      b.textContent = FEATURE_LABELS[name];
      b.addEventListener("click", () => {
        const on = new Set(pg.state.features);
        if (on.has(name)) on.delete(name); else on.add(name);
        command("set", { key: "features", value: [...on].join(",") });
      });
      box.appendChild(b);
    }
  }

  function buildViewPicker() {
    const d = pg.data;
    const show = d && d.csv && d.inputs.length > 2;
    $("view-picker").hidden = !show;
    if (!show) return;
    for (const id of ["fx", "fy"]) {
      const el = $(id);
      el.innerHTML = d.inputs.map((n, k) => `<option value="${k}">${escapeHtml(n)}</option>`).join("");
      el.value = String(d.view[id === "fx" ? 0 : 1]);
    }
  }

  for (const id of ["lr", "activation", "optimizer", "reg", "regRate", "problem", "classes", "fx", "fy"]) {
    $(id).addEventListener("change", () => command("set", { key: id, value: $(id).value }));
  }
  for (const id of ["ratio", "noise", "batchSize"]) {
    $(id).addEventListener("input", () => { $(id + "-value").textContent = $(id).value; });
    $(id).addEventListener("change", () => command("set", { key: id, value: $(id).value }));
  }
  for (const b of document.querySelectorAll(".dataset")) {
    b.addEventListener("click", () => command("set", { key: "dataset", value: b.dataset.name }));
  }
  $("regenerate").addEventListener("click", () => command("set", { key: "seed", value: String((pg.state.seed + 1) % 2147483647) }));
  $("play").addEventListener("click", () => command(pg.playing ? "pause" : "play"));
  $("step").addEventListener("click", () => command("step"));
  $("reset").addEventListener("click", () => command("reset"));
  $("show-test").addEventListener("change", draw);
  $("add-layer").addEventListener("click", () => {
    const layers = pg.state.layers.slice();
    if (layers.length >= 6) return;
    layers.push(layers.length ? layers[layers.length - 1] : 2);
    command("set", { key: "layers", value: layers.join(",") });
  });
  $("remove-layer").addEventListener("click", () => {
    const layers = pg.state.layers.slice(0, -1);
    command("set", { key: "layers", value: layers.join(",") });
  });
  $("layer-controls").addEventListener("click", (ev) => {
    const b = ev.target.closest("button");
    if (!b) return;
    const layers = pg.state.layers.slice();
    const li = Number(b.dataset.layer);
    layers[li] = Math.max(1, Math.min(8, layers[li] + Number(b.dataset.delta)));
    command("set", { key: "layers", value: layers.join(",") });
  });

  // ----- upload and export -----
  $("upload").addEventListener("click", async () => {
    const file = $("upload-file").files[0];
    $("upload-error").textContent = "";
    if (!file) { $("upload-error").textContent = "choose a CSV file first"; return; }
    const q = new URLSearchParams({ token: TOKEN, name: file.name, target: $("upload-target").value.trim() });
    try {
      const res = await fetch(`api/upload?${q}`, { method: "POST", body: file, headers: { "Content-Type": "text/csv" } });
      const body = await res.json();
      if (!res.ok) { $("upload-error").textContent = body.error || `upload refused (${res.status})`; return; }
      applyReply(body);
    } catch (err) {
      $("upload-error").textContent = `upload failed: ${err.message}`;
    }
  });
  $("export-model").href = `api/export/model?token=${encodeURIComponent(TOKEN)}`;
  $("export-data").href = `api/export/data.csv?token=${encodeURIComponent(TOKEN)}`;
  $("show-code").addEventListener("click", async () => {
    const res = await fetch(`api/export/code?token=${encodeURIComponent(TOKEN)}`);
    const body = await res.json();
    $("code-command").textContent = body.command;
    $("code-python").textContent = body.python;
  });

  connect();
})();
