// textlens web page: every piece of text from the user or the model is inserted with
// textContent (never innerHTML), so nothing typed or predicted can run as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const EXAMPLE_ALERT = {
  rule: "Credential Dumping Detected",
  severity: "high",
  host: "fin-ws-042",
  user: "j.doe",
  process: "procdump.exe",
  parent_process: "cmd.exe",
  dst_ip: "203.0.113.7",
  dst_port: 4444,
};
const PAIR_MARK = "\u241e";  // joins the two texts of a pair in every "text" the server returns
const state = { model: null, methods: [] };

function $(id) { return document.getElementById(id); }

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function setStatus(message, isError) {
  const status = $("status");
  status.textContent = message;
  status.className = isError ? "error" : "";
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value;
  if (key) h["X-API-Key"] = key;
  return h;
}

async function getJSON(path) {
  const response = await fetch(path, { headers: headers() });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

async function loadModel() {
  try {
    const [model, methods] = await Promise.all([getJSON("/v1/model"), getJSON("/v1/methods")]);
    state.model = model;
    state.methods = methods.methods;
    $("model-info").textContent = `Model ${model.model_id} · labels: ${model.labels.join(", ")} · up to ${model.max_length} tokens`;
    const target = $("target");
    target.replaceChildren(new Option("predicted", ""));
    for (const label of model.labels) target.add(new Option(label, label));
    const box = $("methods");
    box.replaceChildren(el("legend", "", "Methods"));
    for (const m of state.methods) {
      const label = el("label");
      label.title = m.description;
      const input = document.createElement("input");
      input.type = "checkbox";
      input.name = "method";
      input.value = m.name;
      input.checked = m.default;
      label.append(input, document.createTextNode(" " + m.name));
      box.append(label);
    }
    if (!$("input").value) fillExample();
  } catch (error) {
    $("model-info").textContent = "Could not read the model description: " + error.message +
      " (enter the API key, then press Explain).";
  }
}

function fillExample() {
  const fields = state.model && state.model.template ? state.model.template.fields : [];
  let example;
  if (fields && fields.length) {
    example = {};
    for (const name of fields) example[name] = name in EXAMPLE_ALERT ? EXAMPLE_ALERT[name] : "";
    $("input").value = JSON.stringify(example, null, 2);
  } else {
    $("input").value = "the movie was wonderful";
  }
}

function parseInput(raw, second) {
  const trimmed = raw.trim();
  const paired = second.trim() !== "";
  if (!trimmed) {
    throw new Error(paired ? "Type the first text of the pair too." : "Type a text or paste a JSON record first.");
  }
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    if (paired) throw new Error("A pair is two texts; a JSON record takes no second text (empty that box).");
    let value;
    try { value = JSON.parse(trimmed); } catch (error) {
      throw new Error("This looks like JSON but does not parse: " + error.message);
    }
    if (Array.isArray(value)) return { records: value };
    return { records: [value] };
  }
  return { texts: [paired ? [raw, second] : raw] };
}

async function explain() {
  let body;
  try { body = parseInput($("input").value, $("second").value); } catch (error) { setStatus(error.message, true); return; }
  const methods = [...document.querySelectorAll("input[name=method]:checked")].map((m) => m.value);
  if (methods.length) body.methods = methods;
  if ($("target").value) body.target = $("target").value;
  const button = $("explain");
  button.disabled = true;
  setStatus("Explaining…", false);
  const started = performance.now();
  try {
    const response = await fetch("/v1/explain", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    const elapsed = performance.now() - started;
    const data = await response.json();
    if (!response.ok) {
      const error = data.error || {};
      setStatus(`${response.status} ${error.code || ""}: ${error.message || response.statusText}`, true);
      return;
    }
    render(data, elapsed);
    setStatus("", false);
    if (!state.model) loadModel();
  } catch (error) {
    setStatus("The request failed: " + error.message, true);
  } finally {
    button.disabled = false;
  }
}

function color(score, scale) {
  if (!Number.isFinite(score) || scale <= 0) return "rgb(255,255,255)";
  const s = Math.min(Math.abs(score) / scale, 1);
  if (score >= 0) return `rgb(${Math.round(255 - 190 * s)},${Math.round(255 - 130 * s)},255)`;
  return `rgb(255,${Math.round(255 - 175 * s)},${Math.round(255 - 175 * s)})`;
}

function fmt(score) {
  const sign = score < 0 ? "\u2212" : "+";
  const a = Math.abs(score);
  return sign + (a >= 0.01 && a < 1000 ? a.toFixed(2) : a.toPrecision(2));
}

function render(data, elapsed) {
  const result = data.results[0];
  $("results").hidden = false;
  const label = result.prediction.label;
  $("prediction-label").textContent = label;
  $("prediction-probability").textContent = `(${result.prediction.probabilities[label].toFixed(3)})`;
  const probs = $("probabilities");
  probs.replaceChildren();
  for (const [name, p] of Object.entries(result.prediction.probabilities)) {
    const row = el("div", "prob-row");
    const bar = el("div", "prob-bar");
    const fill = el("div");
    fill.style.width = `${(100 * Math.min(Math.max(p, 0), 1)).toFixed(1)}%`;  // a regression's values are not in [0, 1]
    bar.append(fill);
    row.append(el("span", "", name), bar, el("span", "", p.toFixed(3)));
    probs.append(row);
  }
  $("latency").textContent = `Latency: ${elapsed.toFixed(0)} ms round trip (${data.elapsed_ms.toFixed(0)} ms in the server).`;
  const cut = result.explanations.length ? result.explanations[0].truncated_tokens : 0;
  const max = state.model ? ` of ${state.model.max_length} tokens` : "";
  $("truncated").hidden = !cut;
  $("truncated").textContent = !cut ? "" : (result.pair
    ? `\u26a0 The pair is longer than the model's maximum${max}: ${cut} tokens were cut from the end of the longer text and are not explained.`
    : `\u26a0 The text is longer than the model's maximum${max}: its last ${cut} tokens were cut and are not explained.`);
  const box = $("explanations");
  box.replaceChildren();
  result.explanations.forEach((explanation, i) => box.append(methodSection(explanation, result.reasons[i])));
}

function methodSection(explanation, reasons) {
  const section = el("section", "method");
  section.dataset.method = explanation.method;
  section.append(el("h3", "", `${explanation.method} → ${explanation.target_label}`));
  section.append(el("p", "reasons", reasons.summary));
  const quality = qualityLine(explanation);
  if (quality) section.append(quality);
  section.append(heatmap(explanation));
  if (explanation.fields) section.append(fieldBars(explanation.fields));
  return section;
}

function qualityLine(explanation) {
  // The completeness check of integrated gradients (and any method reporting a delta).
  if (explanation.delta === null || explanation.delta === undefined) return null;
  const q = explanation.quality || {};
  const line = el("p", "quality");
  let text = `Completeness delta ${fmt(explanation.delta)}`;
  if (q.relative_delta !== null && q.relative_delta !== undefined) {
    text += ` (${(100 * q.relative_delta).toFixed(2)}% of |f(x) \u2212 f(baseline)|)`;
  }
  if (q.n_steps) text += `, ${q.n_steps} steps`;
  line.append(document.createTextNode(text));
  if (q.converged === false) line.append(" \u00b7 ", el("span", "warn", "did not reach its tolerance"));
  return line;
}

function plainText(box, text) {
  // Text between words; the pair mark is shown as the boundary between the two texts.
  const at = text.indexOf(PAIR_MARK);
  if (at < 0) { box.append(document.createTextNode(text)); return; }
  box.append(document.createTextNode(text.slice(0, at)));
  const mark = el("span", "pair-mark", "second text \u25b8");  // fonts often lack the mark's glyph
  mark.title = "the second text of the pair starts here";
  box.append(mark, document.createTextNode(text.slice(at + 1)));
}

function heatmap(explanation) {
  const box = el("div", "heatmap");
  const text = explanation.text;
  const scores = explanation.word_scores;
  const scale = Math.max(0, ...scores.map((s) => Math.abs(s || 0)));
  let position = 0;
  explanation.word_spans.forEach(([start, end], i) => {
    if (start > position) plainText(box, text.slice(position, start));
    const word = el("span", "word", text.slice(start, end));
    word.style.background = color(scores[i], scale);
    word.title = `${explanation.words[i]}: ${fmt(scores[i] || 0)}`;
    box.append(word);
    position = end;
  });
  if (position < text.length) plainText(box, text.slice(position));
  return box;
}

function fieldBars(fields) {
  const rowHeight = 24, labelWidth = 150, valueWidth = 70, width = 760;
  const barArea = width - labelWidth - valueWidth;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "field-bars");
  svg.setAttribute("viewBox", `0 0 ${width} ${rowHeight * fields.length + 8}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Contribution of each field");
  const scale = Math.max(1e-12, ...fields.map((f) => Math.abs(f.score || 0)));
  const zero = labelWidth + barArea / 2;
  fields.forEach((field, i) => {
    const y = 4 + i * rowHeight;
    const score = field.score || 0;
    const length = (Math.abs(score) / scale) * (barArea / 2 - 4);
    const name = document.createElementNS(SVG, "text");
    name.setAttribute("x", labelWidth - 8);
    name.setAttribute("y", y + rowHeight / 2 + 4);
    name.setAttribute("text-anchor", "end");
    name.textContent = field.name;
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${field.name} = ${field.value}`;
    name.append(title);
    const bar = document.createElementNS(SVG, "rect");
    bar.setAttribute("class", "bar");
    bar.setAttribute("x", score >= 0 ? zero : zero - length);
    bar.setAttribute("y", y + 4);
    bar.setAttribute("width", Math.max(length, 0.5));
    bar.setAttribute("height", rowHeight - 8);
    bar.setAttribute("fill", score >= 0 ? "#2a5db0" : "#c0392b");
    const value = document.createElementNS(SVG, "text");
    value.setAttribute("x", width - 4);
    value.setAttribute("y", y + rowHeight / 2 + 4);
    value.setAttribute("text-anchor", "end");
    value.textContent = fmt(score);
    svg.append(name, bar, value);
  });
  const axis = document.createElementNS(SVG, "line");
  axis.setAttribute("class", "axis");
  axis.setAttribute("x1", zero);
  axis.setAttribute("x2", zero);
  axis.setAttribute("y1", 0);
  axis.setAttribute("y2", rowHeight * fields.length + 8);
  svg.append(axis);
  return svg;
}

document.addEventListener("DOMContentLoaded", () => {
  $("explain").addEventListener("click", explain);
  $("example").addEventListener("click", fillExample);
  for (const id of ["input", "second"]) {
    $(id).addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) explain();
    });
  }
  loadModel();
});
