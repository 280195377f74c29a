// The live seat-map page: one ES module, no dependencies, the public API only (docs/seat-map.md).
//
// The map is read once in its compact view (a letter per seat) and drawn on one <canvas>; then it is polled
// every second for the seats changed since the version the page holds (`?since=`): `304` with an empty body
// while nothing changed, else only those seats, which are all that is repainted. A `410` (the page's version
// is no longer kept, or the map was rebuilt) reads the compact map again.
//
// The map is public; booking is not. The user signs in (the local stage's POST /dev/token: a user id in, a signed
// token out), the token is kept for the tab, and every booking request sends it as `Authorization: Bearer`; the
// booking controls stay disabled until then. The booking column shows one screen at a time (sign-in, then
// booking), each a small function: see "signing in and the column's screens" below.
//
// A performance with a waiting room (GET /events/{id}: "waiting_room": {"admit_per_second": N}) takes booking
// writes only from users it has admitted: between signing in and booking the column shows its queue (POST
// …/queue, then GET …/queue/{ticket} every second: position, now serving, estimated wait) until the ticket
// brings an admission token, which is kept for the tab per performance (with its expiry) and sent with every
// booking write to that performance as `X-Admission-Token`. See "waiting rooms" below.

const API = new URL("../", import.meta.url); // the app's root, wherever the app is mounted
const REFRESH_MS = 1000;
const FOLLOW_FIRST_MS = 250;
const FOLLOW_MAX_MS = 2000;
const FOLLOW_TIMEOUT_MS = 120000;
const MAX_EVENT_PAGES = 50;
const QUEUE_POLL_MS = 1000; // a ticket is read every second while it waits (sooner when its turn is nearer)
const QUEUE_RETRY_MS = 2000; // after no answer, or an answer the page cannot use
const RATE_WINDOW_MS = 10000; // bytes per second are averaged over the last 10 s

const AVAILABLE = 0;
const HELD = 1;
const BOOKED = 2;
const STATUS_CODES = { AVAILABLE, HELD, BOOKED };
const LETTER_CODES = { A: AVAILABLE, H: HELD, B: BOOKED }; // the compact view's letters
const STATUS_NAMES = ["AVAILABLE", "HELD", "BOOKED"];
const STATUS_WORDS = ["available", "pending", "booked"];
// Each at least 3:1 against the page, and apart in lightness (pending light, available mid, booked dark), so
// they read apart without colour vision too; at 7 px and up each status also has its own mark.
const COLOURS = {
  available: "#15803d",
  pending: "#d97706",
  booked: "#1f2937",
  selected: "#1d4ed8",
  mark: "#ffffff",
  focus: "#111827",
  text: "#111827",
};
const STRATEGY_NOTES = {
  db_lock: "synchronous: 201 CONFIRMED or 409",
  redis_lock: "synchronous: 201 CONFIRMED or 409",
  redis_async: "asynchronous: 202 PENDING, then CONFIRMED",
  fifo_partition: "asynchronous: 202 PENDING, then CONFIRMED or REJECTED in line",
  stream_state: "asynchronous: 202 PENDING, then CONFIRMED or REJECTED",
};
const REASONS = { 200: "OK", 201: "Created", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized",
  403: "Forbidden", 404: "Not Found", 409: "Conflict", 422: "Unprocessable Content", 429: "Too Many Requests",
  503: "Service Unavailable" };
const FINAL = new Set(["CONFIRMED", "REJECTED", "FAILED", "CANCELLED", "EXPIRED"]);
const SECTION_HEADER = 20;
const SECTION_GAP = 18;

const maxSeats = Number(document.querySelector('meta[name="max-seats-per-booking"]')?.content) || 4;
const $ = (id) => document.getElementById(id);
const ui = {
  event: $("event"), performance: $("performance"), pickerMessage: $("picker-message"),
  title: $("map-title"), strategy: $("strategy"), canvas: $("seats"), wrap: $("canvas-wrap"),
  seatStatus: $("seat-status"), hover: $("hover"), sections: $("sections"), live: $("live"),
  booked: $("count-booked"), pending: $("count-pending"), available: $("count-available"), total: $("count-total"),
  signInForm: $("sign-in-form"), user: $("user-id"), signIn: $("sign-in"), signInMessage: $("sign-in-message"),
  account: $("account"), signedInUser: $("signed-in-user"), signOut: $("sign-out"),
  form: $("book-form"), bookControls: $("book-controls"), seatIds: $("seat-ids"), book: $("book"),
  clear: $("clear"), result: $("result"), bookingList: $("booking-list"), bookings: $("bookings"),
  noBookings: $("no-bookings"),
  hold: $("hold"), bestSection: $("best-section"), bestCount: $("best-count"), bookBest: $("book-best"),
  queueRate: $("queue-rate"), queueStatus: $("queue-status"), queueMessage: $("queue-message"),
  admissionNote: $("admission-note"),
};
const ctx = ui.canvas.getContext("2d");

// --- state ---------------------------------------------------------------------------------------------------
// version: the version of the map the page holds (what it asks `since=`); null until a whole map is read.
const map = {
  performanceId: null, strategy: null, version: null, shape: null,
  // {name, price, rows, cols, start, count, grid: Int32Array (row-major seat index or -1), box, available, text}
  sections: [],
  ids: new Int32Array(0), rows: new Int32Array(0), numbers: new Int32Array(0), sectionOf: new Int32Array(0),
  status: new Uint8Array(0), x: new Float32Array(0), y: new Float32Array(0), index: new Map(),
  counts: [0, 0, 0], // seats per status
  cell: 16, width: 0, height: 0,
};
const selected = new Set(); // seat ids
let focusIndex = -1;
let bookingInFlight = false;
let attempt = null; // {key, body, performanceId}: one Idempotency-Key per attempt, kept for a retry of it
const poll = { generation: 0, timer: 0, busy: false, again: false };
// What following the map has cost this tab (window.seatMapStats; the live line shows it). bytes: the seat map's
// answers as the browser received them (Resource Timing's transferSize: headers and the body as sent, gzip
// included), or, where the browser does not report it, their Content-Length.
const stats = {
  requests: 0, maps: 0, deltas: 0, notModified: 0, gone: 0, errors: 0, fullAnswers: 0,
  changedSeats: 0, bytes: 0, bodyBytes: 0, bytesPerSecond: 0, since: performance.now(),
  drawnSeats: 0, drawMs: 0, lastDrawMs: 0, lastAt: null, lastMessage: "",
};
const received = []; // [time, bytes] of the last RATE_WINDOW_MS

// --- HTTP ----------------------------------------------------------------------------------------------------
function api(path) {
  return new URL(path, API);
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

function errorMessage(body, response) {
  return body?.error?.message || `${response.status} ${REASONS[response.status] || ""}`.trim();
}

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // crypto.randomUUID exists only in secure contexts (https, localhost); a plain-http host gets the same v4.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((v) => v.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- events and performances ---------------------------------------------------------------------------------
async function loadEvents() {
  const events = [];
  let cursor = null;
  try {
    for (let page = 0; page < MAX_EVENT_PAGES; page++) {
      const url = api("events");
      url.searchParams.set("limit", "100");
      if (cursor) url.searchParams.set("cursor", cursor);
      const response = await fetch(url, { cache: "no-store" });
      const body = await readJson(response);
      if (!response.ok) throw new Error(errorMessage(body, response));
      events.push(...body.events);
      cursor = body.next_cursor;
      if (!cursor) break;
    }
  } catch (error) {
    ui.pickerMessage.textContent = `Could not list the events: ${error.message}`;
  }
  events.reverse(); // newest first: the one just created is on top
  const options = [new Option(events.length ? "Choose an event" : "No events yet", "")];
  for (const event of events) {
    options.push(new Option(`${event.name} — ${event.venue} (event ${event.event_id})`, String(event.event_id)));
  }
  ui.event.replaceChildren(...options);
  ui.event.dataset.loaded = "true";
}

async function chooseEvent() {
  const eventId = ui.event.value;
  ui.performance.disabled = true;
  if (!eventId) {
    ui.performance.replaceChildren(new Option("Choose an event first", ""));
    return;
  }
  ui.performance.replaceChildren(new Option("Loading…", ""));
  let event;
  try {
    const response = await fetch(api(`events/${eventId}`), { cache: "no-store" });
    event = await readJson(response);
    if (!response.ok) throw new Error(errorMessage(event, response));
  } catch (error) {
    ui.pickerMessage.textContent = `Could not read event ${eventId}: ${error.message}`;
    return;
  }
  ui.pickerMessage.textContent = "";
  const options = event.performances.map((p) => {
    rooms.set(p.performance_id, p.waiting_room || null);
    const seats = p.sections.reduce((sum, s) => sum + s.seat_count, 0);
    const when = new Date(p.starts_at).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
    const room = p.waiting_room ? " · waiting room" : "";
    return new Option(`${when} · ${p.strategy} · ${seats} seats${room} (performance ${p.performance_id})`,
      String(p.performance_id));
  });
  ui.performance.replaceChildren(...options);
  ui.performance.disabled = false;
  if (options.length) showPerformance(Number(options[0].value));
}

function showPerformance(performanceId) {
  if (!Number.isInteger(performanceId) || performanceId < 1) return;
  poll.generation++;
  map.performanceId = performanceId;
  map.version = null;
  map.shape = null;
  stats.lastMessage = "";
  rereadReason = "";
  selected.clear();
  focusIndex = -1;
  attempt = null;
  syncSeatInput();
  ui.title.textContent = `Performance ${performanceId}`;
  ui.seatStatus.textContent = "";
  history.replaceState(null, "", `#performance=${performanceId}`);
  pollNow();
  if (session) afterSignIn(); // this performance's own way to booking: its queue, or straight on
}

// --- live refresh --------------------------------------------------------------------------------------------
function pollNow() {
  clearTimeout(poll.timer);
  if (poll.busy) {
    poll.again = true;
    return;
  }
  void tick(poll.generation);
}

async function tick(generation) {
  poll.busy = true;
  try {
    await refresh(generation);
  } finally {
    poll.busy = false;
    if (poll.again || generation !== poll.generation) {
      poll.again = false;
      pollNow();
    } else if (!document.hidden) {
      poll.timer = setTimeout(() => tick(generation), REFRESH_MS);
    }
  }
}

function seatsUrl(performanceId, since) {
  const url = api(`performances/${performanceId}/seats`);
  url.searchParams.set("view", "compact");
  if (since !== null) url.searchParams.set("since", String(since));
  return url;
}

// One poll: the compact map when the page holds none, else the changes since the version it holds.
async function refresh(generation) {
  const performanceId = map.performanceId;
  if (performanceId === null) return;
  const since = map.version;
  let response;
  let body = null;
  try {
    // no-store: the page keeps its own copy and must see every answer (a 304 included) itself.
    response = await fetch(seatsUrl(performanceId, since), { cache: "no-store" });
    if (response.status !== 304) body = await readJson(response);
  } catch (error) {
    stats.errors++;
    ui.live.textContent = `Connection lost (${error.message}); retrying every second.`;
    return;
  }
  if (generation !== poll.generation || performanceId !== map.performanceId) return;
  stats.requests++;
  stats.lastAt = new Date();
  countBytes(response);
  if (response.status === 304) {
    stats.notModified++;
  } else if (response.status === 200 && Array.isArray(body?.changes) && since !== null) {
    stats.deltas++;
    if (!applyChanges(body)) {
      // A seat the page does not know: its map is not this one any more; read it whole.
      rereadBecause(`the changes since version ${since} named a seat this map does not have`);
    }
  } else if (response.status === 200 && Array.isArray(body?.sections)) {
    stats.maps++;
    if (since !== null) {
      // A whole map answering a `since=` poll: a server without deltas (it ignores since).
      stats.fullAnswers++;
      stats.lastMessage = "the server answered the whole map, not the changes";
    } else if (rereadReason) {
      stats.lastMessage = `${rereadReason}: map read again at version ${body.version}`;
      rereadReason = "";
    }
    applyMap(body);
  } else if (response.status === 410 && body?.error?.code === "VERSION_GONE") {
    stats.gone++;
    rereadBecause(`version ${since} is gone (410)`);
  } else if (response.status === 400 && body?.error?.field === "since" && since !== null) {
    stats.errors++;
    rereadBecause(`version ${since} was refused (400)`); // a version the page could not have been sent
  } else {
    stats.errors++;
    ui.live.textContent = `The seat map could not be read: ${errorMessage(body, response)}`;
    if (response.status === 404) {
      ui.title.textContent = `Performance ${performanceId} not found`;
      map.performanceId = null; // nothing to follow
    }
    return;
  }
  showLive();
}

// The map is read whole again at once (the seats stay drawn until it replaces them); the live line says why.
let rereadReason = "";
function rereadBecause(reason) {
  rereadReason = reason;
  stats.lastMessage = `${reason}: reading the map again`;
  map.version = null;
  pollNow();
}

// The bytes of a seat-map answer: the browser's own count (Resource Timing) when it reports one, which comes
// a moment later (observer below); else the body's Content-Length (a 304 has none).
const timedResources = typeof PerformanceObserver !== "undefined" &&
  (PerformanceObserver.supportedEntryTypes || []).includes("resource");

function countBytes(response) {
  const length = Number(response.headers.get("Content-Length")) || 0;
  stats.bodyBytes += length;
  if (!timedResources) addBytes(length);
}

function addBytes(bytes) {
  const now = performance.now();
  stats.bytes += bytes;
  received.push([now, bytes]);
  while (received.length && received[0][0] < now - RATE_WINDOW_MS) received.shift();
  const span = Math.min(RATE_WINDOW_MS, now - stats.since);
  stats.bytesPerSecond = span > 0 ? (received.reduce((sum, [, b]) => sum + b, 0) * 1000) / span : 0;
}

if (timedResources) {
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if (entry.initiatorType !== "fetch" || !/\/performances\/\d+\/seats\?/.test(entry.name)) continue;
      addBytes(entry.transferSize || 0);
    }
  }).observe({ type: "resource" });
}

function showLive() {
  const time = stats.lastAt ? stats.lastAt.toLocaleTimeString() : "–";
  const drawn = stats.drawnSeats
    ? ` · drawn ${stats.drawnSeats.toLocaleString()} seats in ${Math.round(stats.drawMs)} ms` : "";
  const note = stats.lastMessage ? ` · ${stats.lastMessage}` : "";
  const plural = (n, word) => `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;
  ui.live.textContent = `Live: checked ${time} · version ${map.version} · ${plural(stats.requests, "check")}: ` +
    `${stats.notModified} unchanged (304), ${stats.deltas} with changes, ${plural(stats.maps, "whole map")}` +
    `${stats.gone ? `, ${stats.gone} gone (410)` : ""} · ${(stats.bytesPerSecond / 1000).toFixed(2)} KB/s ` +
    `received (last 10 s)${drawn} · last change drawn in ${stats.lastDrawMs.toFixed(1)} ms${note}`;
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) clearTimeout(poll.timer); // a hidden tab costs the server nothing
  else pollNow();
});

// --- the map's shape and layout ------------------------------------------------------------------------------
// The compact view: per section its shape and a letter per seat in seat-id order, row by row.
function shapeOf(body) {
  return body.sections.map((s) => `${s.section_id}:${s.first_seat_id}:${s.rows}x${s.seats_per_row}`).join(",");
}

function applyMap(body) {
  const started = performance.now();
  const shape = shapeOf(body);
  map.strategy = body.strategy;
  map.version = body.version;
  if (shape !== map.shape) {
    buildShape(body);
    map.shape = shape;
    layout();
    pruneSelection();
    showCounts();
    stats.drawnSeats = map.ids.length;
    stats.drawMs = performance.now() - started; // read into the model, laid out, every seat painted
    stats.lastDrawMs = stats.drawMs;
    return;
  }
  let k = 0;
  for (const section of body.sections) {
    const letters = section.status;
    for (let n = 0; n < letters.length; n++, k++) setStatus(k, LETTER_CODES[letters[n]] ?? BOOKED);
  }
  pruneSelection();
  showCounts();
  stats.lastDrawMs = performance.now() - started;
}

// The changes since the version the page held: only those seats are repainted. False if one is unknown.
function applyChanges(body) {
  const started = performance.now();
  let known = true;
  for (const change of body.changes) {
    const k = map.index.get(change.seat_id);
    if (k === undefined) {
      known = false;
      continue;
    }
    setStatus(k, STATUS_CODES[change.status] ?? BOOKED);
  }
  stats.changedSeats += body.changes.length;
  map.version = body.version;
  if (body.changes.length) {
    pruneSelection();
    showCounts();
  }
  stats.lastDrawMs = performance.now() - started;
  return known;
}

function setStatus(k, status) {
  const old = map.status[k];
  if (old === status) return;
  map.status[k] = status;
  map.counts[old]--;
  map.counts[status]++;
  const section = map.sections[map.sectionOf[k]];
  section.available += (status === AVAILABLE) - (old === AVAILABLE);
  drawSeat(k);
}

function buildShape(body) {
  const count = body.sections.reduce((sum, s) => sum + s.status.length, 0);
  map.ids = new Int32Array(count);
  map.rows = new Int32Array(count);
  map.numbers = new Int32Array(count);
  map.sectionOf = new Int32Array(count);
  map.status = new Uint8Array(count);
  map.x = new Float32Array(count);
  map.y = new Float32Array(count);
  map.index = new Map();
  map.sections = [];
  map.counts = [0, 0, 0];
  let k = 0;
  body.sections.forEach((section, s) => {
    const cols = section.seats_per_row;
    const rows = Math.ceil(section.status.length / cols);
    const grid = new Int32Array(rows * cols).fill(-1);
    const start = k;
    let available = 0;
    const letters = section.status;
    for (let n = 0; n < letters.length; n++, k++) {
      const status = LETTER_CODES[letters[n]] ?? BOOKED;
      map.ids[k] = section.first_seat_id + n;
      map.rows[k] = Math.floor(n / cols) + 1;
      map.numbers[k] = (n % cols) + 1;
      map.sectionOf[k] = s;
      map.status[k] = status;
      map.counts[status]++;
      available += status === AVAILABLE;
      map.index.set(map.ids[k], k);
      grid[n] = k;
    }
    const text = document.createTextNode("");
    const item = document.createElement("li");
    item.append(Object.assign(document.createElement("strong"), { textContent: section.name }), text);
    map.sections.push({ name: section.name, price: section.price, rows, cols, start, count: k - start, grid,
      available, text, item, sectionId: section.section_id });
  });
  ui.sections.replaceChildren(...map.sections.map((section) => section.item));
  ui.bestSection.replaceChildren(...map.sections.map((section) =>
    Object.assign(document.createElement("option"), { value: section.sectionId, textContent: section.name })));
  ui.title.textContent = `Performance ${body.performance_id}`;
  ui.strategy.replaceChildren("Strategy: ", Object.assign(document.createElement("strong"),
    { textContent: body.strategy }), ` — ${STRATEGY_NOTES[body.strategy] || ""}`);
  ui.canvas.setAttribute("aria-label", `Seat map of performance ${body.performance_id}, ${count} seats`);
}

// Sections flow left to right and wrap; the largest seat size whose map fits the height budget wins.
function flow(width, cell) {
  let x = 0;
  let y = 0;
  let rowHeight = 0;
  let widest = 0;
  const boxes = [];
  for (const section of map.sections) {
    const w = Math.max(section.cols * cell, 90);
    const h = SECTION_HEADER + section.rows * cell;
    if (x > 0 && x + w > width) {
      x = 0;
      y += rowHeight + SECTION_GAP;
      rowHeight = 0;
    }
    boxes.push({ x, y, w, h });
    widest = Math.max(widest, x + w);
    x += w + SECTION_GAP;
    rowHeight = Math.max(rowHeight, h);
  }
  return { boxes, width: widest, height: y + rowHeight };
}

function layout() {
  const available = Math.max(ui.wrap.clientWidth - 16, 200);
  const budget = Math.max(320, Math.min(760, window.innerHeight * 0.62));
  let chosen = null;
  let cell = 28;
  for (; cell >= 5; cell--) {
    chosen = flow(available, cell);
    if (chosen.height <= budget && chosen.width <= available) break;
  }
  cell = Math.max(cell, 5);
  map.cell = cell;
  map.width = Math.ceil(chosen.width);
  map.height = Math.ceil(chosen.height);
  map.sections.forEach((section, s) => {
    section.box = chosen.boxes[s];
    for (let k = section.start; k < section.start + section.count; k++) {
      map.x[k] = section.box.x + (map.numbers[k] - 1) * cell;
      map.y[k] = section.box.y + SECTION_HEADER + (map.rows[k] - 1) * cell;
    }
  });
  const ratio = window.devicePixelRatio || 1;
  ui.canvas.width = Math.max(1, Math.round(map.width * ratio));
  ui.canvas.height = Math.max(1, Math.round(map.height * ratio));
  ui.canvas.style.width = `${map.width}px`;
  ui.canvas.style.height = `${map.height}px`;
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  drawAll();
}

// --- drawing -------------------------------------------------------------------------------------------------
function paintSeat(c, x, y, size, kind) {
  const gap = size >= 10 ? 2 : 1;
  const s = size - gap;
  c.fillStyle = COLOURS[kind];
  if (s >= 10 && c.roundRect) {
    c.beginPath();
    c.roundRect(x, y, s, s, Math.min(4, s / 4));
    c.fill();
  } else {
    c.fillRect(x, y, s, s);
  }
  if (s < 7) return; // too small for a mark: colour alone
  // A mark per status, so colour is never the only cue.
  c.strokeStyle = COLOURS.mark;
  c.fillStyle = COLOURS.mark;
  c.lineWidth = Math.max(1.5, s / 8);
  const m = s * 0.28;
  if (kind === "booked") {
    c.beginPath();
    c.moveTo(x + m, y + m);
    c.lineTo(x + s - m, y + s - m);
    c.moveTo(x + s - m, y + m);
    c.lineTo(x + m, y + s - m);
    c.stroke();
  } else if (kind === "pending") {
    c.beginPath();
    c.moveTo(x + m, y + s / 2);
    c.lineTo(x + s - m, y + s / 2);
    c.stroke();
  } else if (kind === "selected") {
    c.beginPath();
    c.arc(x + s / 2, y + s / 2, s * 0.2, 0, Math.PI * 2);
    c.fill();
  }
}

function kindOf(k) {
  if (selected.has(map.ids[k])) return "selected";
  return STATUS_WORDS[map.status[k]];
}

function drawSeat(k) {
  const cell = map.cell;
  const x = map.x[k];
  const y = map.y[k];
  ctx.clearRect(x, y, cell, cell);
  paintSeat(ctx, x, y, cell, kindOf(k));
  if (k === focusIndex && document.activeElement === ui.canvas) {
    // A dark ring with a light one inside: visible on every seat colour.
    const s = cell - (cell >= 10 ? 2 : 1);
    ctx.lineWidth = 2;
    ctx.strokeStyle = COLOURS.focus;
    ctx.strokeRect(x + 1, y + 1, s - 2, s - 2);
    if (s >= 8) {
      ctx.lineWidth = 1;
      ctx.strokeStyle = COLOURS.mark;
      ctx.strokeRect(x + 2.5, y + 2.5, s - 5, s - 5);
    }
  }
}

function drawAll() {
  ctx.clearRect(0, 0, map.width, map.height);
  ctx.fillStyle = COLOURS.text;
  ctx.font = "600 13px system-ui, sans-serif";
  ctx.textBaseline = "top";
  for (const section of map.sections) {
    const label = `${section.name} · ${section.price.toLocaleString()}`;
    ctx.fillText(label, section.box.x, section.box.y + 2, section.box.w);
  }
  for (let k = 0; k < map.ids.length; k++) drawSeat(k);
}

function drawLegend() {
  for (const swatch of document.querySelectorAll("canvas.swatch")) {
    const c = swatch.getContext("2d");
    paintSeat(c, 0, 0, 16, swatch.dataset.kind);
  }
}

function showCounts() {
  const [available, pending, booked] = map.counts;
  ui.booked.textContent = booked.toLocaleString();
  ui.pending.textContent = pending.toLocaleString();
  ui.available.textContent = available.toLocaleString();
  ui.total.textContent = map.status.length.toLocaleString();
  for (const section of map.sections) {
    section.text.textContent = `: ${section.available.toLocaleString()} of ${section.count.toLocaleString()} available`;
  }
}

// --- choosing seats ------------------------------------------------------------------------------------------
function describe(k) {
  const section = map.sections[map.sectionOf[k]];
  const chosen = selected.has(map.ids[k]) ? ", selected" : "";
  return `${section.name}, row ${map.rows[k]}, seat ${map.numbers[k]} (seat id ${map.ids[k]}): ` +
    `${STATUS_WORDS[map.status[k]]}${chosen}`;
}

function toggle(k) {
  const id = map.ids[k];
  if (selected.has(id)) {
    selected.delete(id);
  } else if (map.status[k] !== AVAILABLE) {
    ui.seatStatus.textContent = `Seat ${id} is ${STATUS_WORDS[map.status[k]]}; choose an available seat.`;
    return;
  } else if (selected.size >= maxSeats) {
    ui.seatStatus.textContent = `At most ${maxSeats} seats per booking; deselect one first.`;
    return;
  } else {
    selected.add(id);
  }
  drawSeat(k);
  syncSeatInput();
  ui.seatStatus.textContent = `${describe(k)}. ${selected.size} of ${maxSeats} chosen.`;
}

function moveFocus(k) {
  if (k < 0 || k >= map.ids.length) return;
  const previous = focusIndex;
  focusIndex = k;
  if (previous >= 0) drawSeat(previous);
  drawSeat(k);
  ui.seatStatus.textContent = describe(k);
  const x = map.x[k];
  const y = map.y[k];
  const wrap = ui.wrap;
  if (x < wrap.scrollLeft || x + map.cell > wrap.scrollLeft + wrap.clientWidth) wrap.scrollLeft = x - 20;
  if (y < wrap.scrollTop || y + map.cell > wrap.scrollTop + wrap.clientHeight) wrap.scrollTop = y - 20;
}

function seatAt(grid, section, row, number) {
  if (row < 1 || row > section.rows || number < 1 || number > section.cols) return -1;
  return grid[(row - 1) * section.cols + (number - 1)];
}

function neighbour(k, key) {
  const s = map.sectionOf[k];
  const section = map.sections[s];
  const row = map.rows[k];
  const number = map.numbers[k];
  const nearestIn = (t, wantedRow) => {
    const other = map.sections[t];
    const r = Math.min(Math.max(wantedRow, 1), other.rows);
    for (let n = Math.min(number, other.cols); n >= 1; n--) {
      const found = seatAt(other.grid, other, r, n);
      if (found >= 0) return found;
    }
    return other.start;
  };
  switch (key) {
    case "ArrowLeft": return k - 1;
    case "ArrowRight": return k + 1;
    case "ArrowUp": {
      const up = seatAt(section.grid, section, row - 1, number);
      if (up >= 0) return up;
      return s > 0 ? nearestIn(s - 1, Infinity) : k;
    }
    case "ArrowDown": {
      const down = seatAt(section.grid, section, row + 1, number);
      if (down >= 0) return down;
      return s + 1 < map.sections.length ? nearestIn(s + 1, 1) : k;
    }
    case "Home": return seatAt(section.grid, section, row, 1) >= 0 ? seatAt(section.grid, section, row, 1) : k;
    case "End": {
      for (let n = section.cols; n >= 1; n--) {
        const found = seatAt(section.grid, section, row, n);
        if (found >= 0) return found;
      }
      return k;
    }
    case "PageUp": return s > 0 ? map.sections[s - 1].start : section.start;
    case "PageDown": return s + 1 < map.sections.length ? map.sections[s + 1].start : k;
    default: return null;
  }
}

ui.canvas.addEventListener("keydown", (event) => {
  if (!map.ids.length) return;
  if (event.key === " " || event.key === "Enter") {
    event.preventDefault();
    if (focusIndex < 0) moveFocus(0);
    else toggle(focusIndex);
    return;
  }
  const start = focusIndex < 0 ? 0 : focusIndex;
  const next = neighbour(start, event.key);
  if (next === null) return;
  event.preventDefault();
  moveFocus(focusIndex < 0 ? 0 : next);
});

let pointerDown = false; // focus that comes with a click goes to the clicked seat, not the first one
ui.canvas.addEventListener("pointerdown", () => {
  pointerDown = true;
});
ui.canvas.addEventListener("focus", () => {
  if (!map.ids.length || pointerDown) return;
  if (focusIndex < 0) moveFocus(0);
  else moveFocus(focusIndex);
});
ui.canvas.addEventListener("blur", () => {
  if (focusIndex >= 0 && focusIndex < map.ids.length) drawSeat(focusIndex);
});

function seatUnder(event) {
  const rect = ui.canvas.getBoundingClientRect();
  const x = event.clientX - rect.left;
  const y = event.clientY - rect.top;
  for (const section of map.sections) {
    const box = section.box;
    if (x < box.x || x >= box.x + section.cols * map.cell || y < box.y + SECTION_HEADER || y >= box.y + box.h) continue;
    const number = Math.floor((x - box.x) / map.cell) + 1;
    const row = Math.floor((y - box.y - SECTION_HEADER) / map.cell) + 1;
    return seatAt(section.grid, section, row, number);
  }
  return -1;
}

ui.canvas.addEventListener("click", (event) => {
  pointerDown = false;
  const k = seatUnder(event);
  if (k < 0) return;
  const previous = focusIndex;
  focusIndex = k;
  if (previous >= 0 && previous !== k) drawSeat(previous);
  toggle(k);
});

ui.canvas.addEventListener("mousemove", (event) => {
  const k = seatUnder(event);
  ui.hover.textContent = k < 0 ? "" : describe(k);
});

function syncSeatInput() {
  ui.seatIds.value = [...selected].sort((a, b) => a - b).join(", ");
}

// Seat ids typed in the seat field replace the selection (on change, and before a booking: Enter in the field
// submits the form).
function applySeatInput() {
  const wanted = ui.seatIds.value.split(/[\s,;]+/).filter(Boolean).map(Number);
  const problems = [];
  const next = new Set();
  for (const id of wanted) {
    const k = map.index.get(id);
    if (!Number.isInteger(id) || k === undefined) problems.push(`${id} is not a seat of this performance`);
    else if (map.status[k] !== AVAILABLE) problems.push(`seat ${id} is ${STATUS_WORDS[map.status[k]]}`);
    else if (next.size >= maxSeats) problems.push(`at most ${maxSeats} seats per booking`);
    else next.add(id);
  }
  const changed = new Set([...selected, ...next]);
  selected.clear();
  for (const id of next) selected.add(id);
  for (const id of changed) drawSeat(map.index.get(id));
  syncSeatInput();
  ui.seatStatus.textContent = problems.length
    ? `Not selected: ${[...new Set(problems)].join("; ")}.`
    : `${selected.size} of ${maxSeats} seats chosen.`;
}

ui.seatIds.addEventListener("change", applySeatInput);

// Seats taken by someone else since they were chosen leave the selection; not while our own booking of them
// is in flight or its answer was lost (the map may then show them held by us).
function pruneSelection() {
  if (bookingInFlight || attempt?.unanswered) return;
  const gone = [...selected].filter((id) => map.status[map.index.get(id)] !== AVAILABLE);
  if (!gone.length) return;
  deselect(gone);
  ui.seatStatus.textContent = `Just taken by someone else: seat ${gone.join(", ")}.`;
}

function deselect(ids) {
  for (const id of ids) {
    selected.delete(id);
    const k = map.index.get(id);
    if (k !== undefined) drawSeat(k);
  }
  syncSeatInput();
}

ui.clear.addEventListener("click", () => {
  deselect([...selected]);
  ui.seatStatus.textContent = "Selection cleared.";
});

// --- signing in and the column's screens ---------------------------------------------------------------------
// The booking column shows one screen at a time, in the order a user goes through them: sign in, then book. A
// screen is the page's [data-screen] elements of that name plus a function that prepares it; only the booking
// screen enables the booking controls. Between signing in and booking, a performance with a waiting room shows
// its queue until the user is admitted (afterSignIn chooses).
const SCREENS = {
  "sign-in": showSignInScreen,
  queue: showQueueScreen,
  book: showBookScreen,
};
let screen = null;

function showScreen(name, ...args) {
  stopQueue(); // a queue is followed only while its screen shows (showQueueScreen starts it again)
  screen = name;
  for (const element of document.querySelectorAll("[data-screen]")) element.hidden = element.dataset.screen !== name;
  ui.bookControls.disabled = name !== "book";
  SCREENS[name](...args);
}

// message: why the user is asked to sign in (again), e.g. their token expired; "" on a first visit.
function showSignInScreen(message = "") {
  tellSignIn(message);
  if (!ui.user.value) ui.user.value = recall() || "";
  // Sent back here from something they were doing: the field, so that signing in again is one keystroke.
  if (message) ui.user.focus();
}

function showBookScreen() {
  tellSignIn("");
  showAdmission();
}

// The sign-in screen's line: why the user is to sign in (again), or a sign-in's progress (kind "").
function tellSignIn(text, kind = "error") {
  ui.signInMessage.textContent = text;
  ui.signInMessage.classList.toggle("error", kind === "error");
}

// What follows a sign-in (and choosing another performance while signed in): the performance's queue when it
// has a waiting room and this user holds no admission to it that is still good, else the booking screen.
function afterSignIn() {
  showScreen(needsQueue(map.performanceId) ? "queue" : "book");
}

// The local stage's sign-in (docs/api.md#identity): its token is kept for this tab only (sessionStorage: another
// tab signs in on its own, closing the tab forgets it). The map is public and never sends it.
const SESSION_KEY = "seat-map-session";
const MAX_TIMER_MS = 2 ** 31 - 1; // setTimeout's longest delay; a later expiry is checked again then
let session = null; // {user, token, expiresAt: epoch ms}
let expiryTimer = 0;

async function signIn(userId) {
  ui.signIn.disabled = true;
  tellSignIn("Signing in…", "");
  try {
    const response = await fetch(api("dev/token"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user_id: userId }),
    });
    const answer = await readJson(response);
    if (response.status === 201 && answer?.token) {
      // The token's sub is the user id sent, as the server took it (it is not trimmed or folded there).
      startSession({ user: userId, token: answer.token, expiresAt: answer.expires_at * 1000 });
    } else if (response.status === 404 || (response.status === 403 && !answer?.error)) {
      // No such route: a deployment whose users sign in elsewhere (DEV_TOKENS is off outside the local stage).
      tellSignIn("This server has no local sign-in (POST /dev/token), so this page " +
        "cannot book here.");
    } else {
      tellSignIn(`Could not sign in: ${errorMessage(answer, response)}`);
    }
  } catch (error) {
    tellSignIn(`Could not sign in: no answer (${error.message}); try again.`);
  } finally {
    ui.signIn.disabled = false;
  }
}

function startSession(signedIn) {
  session = signedIn;
  saveSession();
  remember(session.user);
  forgetBookingsOfOthers(session.user);
  showAccount();
  afterSignIn();
  watchExpiry(); // last: a token kept past its expiry signs out at once
}

// message: what the sign-in screen says (why the user was signed out; "" when they chose to).
function signOut(message = "") {
  session = null;
  clearTimeout(expiryTimer);
  saveSession();
  showAccount();
  showScreen("sign-in", message);
}

// The token stops being accepted at expiresAt: the user is signed out then rather than at their next click
// (a 401, handled the same way, still covers a clock that differs from the server's).
function watchExpiry() {
  clearTimeout(expiryTimer);
  const left = session.expiresAt - Date.now();
  if (left <= 0) return signOut(`Your sign-in as ${session.user} has expired. Sign in again to go on booking.`);
  expiryTimer = setTimeout(watchExpiry, Math.min(left, MAX_TIMER_MS));
}

function showAccount() {
  ui.account.hidden = !session;
  ui.signedInUser.textContent = session?.user || "";
  ui.bookingList.disabled = !session; // Cancel, Confirm and Extend act as the signed-in user
}

function saveSession() {
  try {
    if (session) sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
    else sessionStorage.removeItem(SESSION_KEY);
  } catch {
    // storage refused (private mode): the sign-in lasts until the page is left
  }
}

// The tab's sign-in, kept across reloads; null when there is none (or what is kept is not one).
function loadSession() {
  try {
    const kept = JSON.parse(sessionStorage.getItem(SESSION_KEY));
    if (typeof kept?.user === "string" && typeof kept.token === "string" && Number.isFinite(kept.expiresAt)) {
      return kept;
    }
  } catch {
    // unreadable: as if there were none
  }
  return null;
}

// The tab's list of bookings is one user's: another user's Cancel or Confirm would only be refused (404).
function forgetBookingsOfOthers(user) {
  if (ui.bookings.dataset.user === user) return;
  ui.bookings.replaceChildren();
  ui.bookings.dataset.user = user;
  ui.noBookings.hidden = false;
}

// A booking request as the signed-in user. A 401 means the token no longer proves anyone (it expired, or the
// server's signing key changed): the user is signed out and asked to sign in again; the caller still gets the
// answer, to say what became of what it asked.
async function fetchAsUser(path, init = {}) {
  if (!session) throw new Error("not signed in");
  const { token, user } = session;
  const response = await fetch(api(path), { ...init, headers: { ...init.headers, Authorization: `Bearer ${token}` } });
  if (response.status === 401 && session?.token === token) { // not a sign-in made since the request left
    signOut(`You were signed out: your sign-in as ${user} has expired or is no longer accepted (401). ` +
      "Sign in again to go on booking.");
  }
  return response;
}

// A refusal in words; a 401 says what the user does about it (the sign-in screen says it too).
function refusal(answer, response) {
  if (response.status === 401) return "Not done: you were signed out. Sign in again, then try again.";
  if (response.status === 429) {
    return `Not done: too many requests. Try again in ${retryAfter(response)} s.`;
  }
  if (response.status === 403 && answer?.error?.code === "ADMISSION_REQUIRED") {
    return "Not done: this performance has a waiting room and you hold no admission to it that is still good. " +
      "Wait for your turn in its queue, then try again.";
  }
  return errorMessage(answer, response);
}

ui.signInForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const userId = ui.user.value.trim();
  if (!userId) {
    ui.user.focus();
    tellSignIn("Enter your user id to sign in.");
    return;
  }
  void signIn(userId);
});

ui.signOut.addEventListener("click", () => signOut());

// --- waiting rooms -------------------------------------------------------------------------------------------
// rooms: performance id -> its waiting room ({admit_per_second}) or null, as GET /events/{id} said. A performance
// opened from a link is not in it until a booking write is refused 403 ADMISSION_REQUIRED, which puts it there.
const rooms = new Map();
const ADMISSIONS_KEY = "seat-map-admissions"; // sessionStorage: {"<performance id>": {user, token, expiresAt}}
// note: what the queue screen says above its progress while it shows (why the user is back in the queue).
const queue = { generation: 0, timer: 0, ticket: null, note: "" };

function needsQueue(performanceId) {
  return Boolean(session && performanceId !== null && rooms.get(performanceId) && !admissionFor(performanceId));
}

function readAdmissions() {
  if (unsaved) return unsaved;
  try {
    const kept = JSON.parse(sessionStorage.getItem(ADMISSIONS_KEY));
    return kept && typeof kept === "object" ? kept : {};
  } catch {
    return {};
  }
}

function writeAdmissions(admissions) {
  try {
    sessionStorage.setItem(ADMISSIONS_KEY, JSON.stringify(admissions));
    unsaved = null;
  } catch {
    unsaved = admissions; // storage refused (private mode): kept until the page is left
  }
}
let unsaved = null; // the admissions, when storage refuses them

// The signed-in user's admission to the performance, while it is good: {token, expiresAt (epoch ms)} or null.
function admissionFor(performanceId) {
  if (!session || performanceId === null) return null;
  const kept = readAdmissions()[performanceId];
  if (kept?.user !== session.user || typeof kept.token !== "string" || !(kept.expiresAt > Date.now())) return null;
  return kept;
}

function keepAdmission(performanceId, token, expiresAt) {
  const admissions = { ...readAdmissions(), [performanceId]: { user: session.user, token, expiresAt } };
  // Only the good ones: the list does not grow with every performance ever queued for.
  for (const [id, kept] of Object.entries(admissions)) if (!(kept?.expiresAt > Date.now())) delete admissions[id];
  writeAdmissions(admissions);
}

function forgetAdmission(performanceId, token) {
  const admissions = readAdmissions();
  if (token === undefined || admissions[performanceId]?.token === token) delete admissions[performanceId];
  writeAdmissions(admissions);
}

// The booking screen says until when the admission lets the user book (nothing without a waiting room).
function showAdmission() {
  const admission = admissionFor(map.performanceId);
  ui.admissionNote.textContent = admission ? "Admitted from the waiting room: you may book this performance " +
    `until ${new Date(admission.expiresAt).toLocaleTimeString()}.` : "";
}

// message: why the user is (back) in the queue, e.g. their admission was refused; "" when they just got here.
function showQueueScreen(message = "") {
  tellSignIn("");
  const performanceId = map.performanceId;
  const rate = rooms.get(performanceId)?.admit_per_second;
  ui.queueRate.textContent = rate ? String(rate) : "a few";
  ui.queueStatus.textContent = "Joining the queue…";
  queue.note = message;
  tellQueue(message);
  void joinQueue(queue.generation, performanceId);
}

function tellQueue(text) {
  ui.queueMessage.textContent = text;
}

function stopQueue() {
  queue.generation++;
  clearTimeout(queue.timer);
  queue.ticket = null;
  queue.note = "";
}

// Still following this queue: its screen shows for the same performance, not left (or re-entered) since.
function following(generation, performanceId) {
  return generation === queue.generation && screen === "queue" && performanceId === map.performanceId &&
    Boolean(session);
}

function queueLater(generation, ms, next) {
  clearTimeout(queue.timer);
  queue.timer = setTimeout(() => {
    if (generation === queue.generation) void next();
  }, ms);
}

// Join (idempotent per user: a user already in the queue gets the same ticket back).
async function joinQueue(generation, performanceId) {
  let response;
  let answer;
  try {
    response = await fetchAsUser(`performances/${performanceId}/queue`, { method: "POST" });
    answer = await readJson(response);
  } catch (error) {
    if (!following(generation, performanceId)) return;
    tellQueue(`No answer (${error.message}); trying again in ${QUEUE_RETRY_MS / 1000} s.`);
    return queueLater(generation, QUEUE_RETRY_MS, () => joinQueue(generation, performanceId));
  }
  if (!following(generation, performanceId)) return; // left meanwhile (a 401 signs out: the sign-in screen)
  if (response.status === 200 || response.status === 201) return onTicket(generation, performanceId, answer);
  if (response.status === 429) {
    const wait = retryAfter(response);
    ui.queueStatus.textContent = "Not in the queue yet.";
    return countDown(generation, wait, (left) => `Too many requests (429): trying again in ${left} s.`,
      () => joinQueue(generation, performanceId));
  }
  if (response.status === 404 && answer?.error?.message?.includes("no waiting room")) {
    rooms.set(performanceId, null); // booking is open to all here after all
    return afterSignIn();
  }
  ui.queueStatus.textContent = "Not in the queue.";
  tellQueue(`Could not join the queue: ${errorMessage(answer, response)}. Trying again in ` +
    `${QUEUE_RETRY_MS / 1000} s.`);
  queueLater(generation, QUEUE_RETRY_MS, () => joinQueue(generation, performanceId));
}

async function readTicket(generation, performanceId, ticket) {
  let response;
  let answer;
  try {
    response = await fetchAsUser(`performances/${performanceId}/queue/${encodeURIComponent(ticket)}`,
      { cache: "no-store" });
    answer = await readJson(response);
  } catch (error) {
    if (!following(generation, performanceId)) return;
    tellQueue(`No answer (${error.message}); still in the queue, asking again.`);
    return queueLater(generation, QUEUE_RETRY_MS, () => readTicket(generation, performanceId, ticket));
  }
  if (!following(generation, performanceId)) return;
  if (response.status === 200) return onTicket(generation, performanceId, answer);
  if (response.status === 410 || response.status === 404) {
    // 410 TICKET_LAPSED: its turn came and went uncollected; 404: the queue no longer knows it. Join again.
    queue.note = response.status === 410 ? "Your place in the queue lapsed (its turn passed unclaimed): " +
      "you joined again, at the back." : "The queue no longer knew your ticket: you joined again.";
    tellQueue(queue.note);
    return joinQueue(generation, performanceId);
  }
  if (response.status === 429) {
    return countDown(generation, retryAfter(response),
      (left) => `Too many requests (429): asking again in ${left} s.`,
      () => readTicket(generation, performanceId, ticket));
  }
  tellQueue(`Could not read your place in the queue: ${errorMessage(answer, response)}; asking again.`);
  queueLater(generation, QUEUE_RETRY_MS, () => readTicket(generation, performanceId, ticket));
}

function onTicket(generation, performanceId, ticket) {
  queue.ticket = ticket.ticket;
  const expiresAt = Number(ticket.admission_expires_at) * 1000;
  if (ticket.admission_token && expiresAt > Date.now()) {
    keepAdmission(performanceId, ticket.admission_token, expiresAt);
    ui.queueStatus.textContent = "Your turn: booking is open.";
    showScreen("book");
    showResult("ok", "", `Your turn has come: you may book performance ${performanceId} now.`);
    return;
  }
  if (ticket.admission_token) {
    // An admission that is over already: the queue gives this user's collected ticket back as it was.
    ui.queueStatus.textContent = "Your admission has expired.";
    tellQueue("Your admission to this performance has expired, and its queue gives the same one back: " +
      "it cannot admit you again for now.");
    return;
  }
  tellQueue(queue.note); // a problem said before (a 429, no answer) is over
  const eta = Math.max(0, Number(ticket.eta_seconds) || 0);
  const wait = eta < 1 ? "under a second" : `~${Math.ceil(eta)} s`;
  ui.queueStatus.textContent = `Position ${ticket.position} · now serving ${ticket.serving} · ` +
    `estimated wait ${wait}`;
  // Every second; sooner when the turn is due before then, so the admission is collected as it comes.
  const next = eta > 0 && eta * 1000 < QUEUE_POLL_MS ? eta * 1000 + 50 : QUEUE_POLL_MS;
  queueLater(generation, next, () => readTicket(generation, performanceId, ticket.ticket));
}

// A 429's wait, in whole seconds: Retry-After's delay (or date), at least 1.
function retryAfter(response) {
  const value = response.headers.get("Retry-After");
  let seconds = Number(value);
  if (value && !Number.isFinite(seconds)) seconds = (Date.parse(value) - Date.now()) / 1000;
  return Math.max(1, Math.ceil(Number.isFinite(seconds) ? seconds : 1));
}

// Says `text(seconds left)` every second, then does `next`.
function countDown(generation, seconds, text, next) {
  const until = Date.now() + seconds * 1000;
  const step = () => {
    const left = Math.ceil((until - Date.now()) / 1000);
    if (left <= 0) return void next();
    tellQueue(text(left));
    queueLater(generation, Math.min(1000, until - Date.now()), step);
  };
  step();
}

// A booking write (book, cancel, confirm, extend) as the signed-in user, with their admission to the
// performance when they hold one. A 403 ADMISSION_REQUIRED (the admission expired, or the performance has a
// waiting room the page did not know of) forgets it and, for the performance on the map, goes back to its queue.
async function writeAsUser(path, init, performanceId) {
  const admission = admissionFor(performanceId);
  const headers = admission ? { ...init.headers, "X-Admission-Token": admission.token } : init.headers;
  const response = await fetchAsUser(path, { ...init, headers });
  if (response.status === 429) rateLimitedUntil = Date.now() + retryAfter(response) * 1000;
  if (response.status === 403) {
    const answer = await readJson(response.clone());
    if (answer?.error?.code === "ADMISSION_REQUIRED") {
      if (!rooms.get(performanceId)) rooms.set(performanceId, { admit_per_second: null });
      forgetAdmission(performanceId, admission?.token);
      if (performanceId === map.performanceId && session && screen === "book") {
        showScreen("queue", admission ? "Your admission to this performance has expired or is no longer " +
          "accepted (403): you are back in its queue." : "This performance has a waiting room: you are in its " +
          "queue now.");
      }
    }
  }
  return response;
}
let rateLimitedUntil = 0; // a 429's Retry-After: booking is not tried again before then

// --- booking -------------------------------------------------------------------------------------------------
// The last user id signed in with, to fill in the sign-in field next time (the id only; the token is the tab's).
function remember(userId) {
  try {
    localStorage.setItem("seat-map-user-id", userId);
  } catch {
    // storage refused (private mode): the id is simply not remembered
  }
}

function recall() {
  try {
    return localStorage.getItem("seat-map-user-id");
  } catch {
    return null;
  }
}

function showResult(kind, code, text) {
  ui.result.className = `result ${kind}`;
  const parts = [];
  if (code) parts.push(Object.assign(document.createElement("span"), { className: "code", textContent: code }));
  parts.push(text);
  ui.result.replaceChildren(...parts);
}

// Why a booking cannot be sent now, or null. The controls are disabled while signed out; this also covers a
// submit that comes another way (Enter in a field, a script).
function cannotBook() {
  if (!session || screen === "sign-in") return "Sign in to book.";
  if (screen === "queue") return "Wait for your turn in the queue: booking opens when it comes.";
  if (map.performanceId === null) return "Choose a performance first.";
  if (needsQueue(map.performanceId)) { // the admission ran out while this screen showed
    showScreen("queue", "Your admission to this performance has expired: you are back in its queue.");
    return "Your admission has expired: wait for your turn in the queue, then try again.";
  }
  const wait = Math.ceil((rateLimitedUntil - Date.now()) / 1000);
  if (wait > 0) return `Too many requests: try again in ${wait} s.`;
  return null;
}

ui.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (bookingInFlight) return; // a second click while the first is out does nothing
  const refused = cannotBook();
  if (refused) return showResult("error", "", refused);
  if (ui.seatIds.value !== [...selected].sort((a, b) => a - b).join(", ")) applySeatInput();
  const seatIds = [...selected].sort((a, b) => a - b);
  if (!seatIds.length) return showResult("error", "", "Choose at least one seat on the map.");
  await submitBooking({ seat_ids: seatIds }, `seat ${seatIds.join(", ")}`, seatIds);
});

// The best available: the service chooses the seats (side by side when a row has them).
ui.bookBest.addEventListener("click", async () => {
  if (bookingInFlight) return;
  const refused = cannotBook();
  if (refused) return showResult("error", "", refused);
  const count = Number(ui.bestCount.value);
  const sectionId = Number(ui.bestSection.value);
  const name = ui.bestSection.selectedOptions[0]?.textContent || sectionId;
  await submitBooking({ section_id: sectionId, count }, `the best ${count} in ${name}`, []);
});

// The body names no user: the token's is the one who books (docs/api.md#identity).
async function submitBooking(wanted, what, seatIds) {
  const performanceId = map.performanceId;
  const user = session.user;
  const body = JSON.stringify({ ...wanted, hold: ui.hold.checked });
  // One key per attempt: pressing Book again after a lost answer repeats the same attempt (same key, same
  // body, same user: a key is its user's), which the API answers as it answered the first time instead of
  // booking twice.
  if (!attempt || attempt.body !== body || attempt.performanceId !== performanceId || attempt.user !== user) {
    attempt = { key: newKey(), body, performanceId, user };
  }
  bookingInFlight = true;
  ui.book.disabled = ui.bookBest.disabled = true;
  ui.book.setAttribute("aria-busy", "true");
  showResult("", "", `Booking ${what}…`);
  try {
    const response = await writeAsUser(`performances/${performanceId}/bookings`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Idempotency-Key": attempt.key },
      body,
    }, performanceId);
    const answer = await readJson(response);
    handleBookingAnswer(response, answer, seatIds);
  } catch (error) {
    attempt.unanswered = true;
    showResult("error", "", `No answer (${error.message}). Press Book again: the same attempt is repeated ` +
      "with the same Idempotency-Key, so it cannot book twice.");
  } finally {
    bookingInFlight = false;
    ui.book.disabled = ui.bookBest.disabled = false;
    ui.book.removeAttribute("aria-busy");
    pollNow();
  }
}

function handleBookingAnswer(response, answer, seatIds) {
  const code = `${response.status} ${REASONS[response.status] || ""}`.trim();
  if (response.status === 201 || response.status === 202) {
    attempt = null;
    deselect(seatIds);
    const item = addBooking(answer);
    if (answer.status === "PENDING") {
      showResult("ok", code, `Booking ${answer.booking_id} is PENDING; following it…`);
      void follow(answer, item);
    } else {
      showResult("ok", code, `Booking ${answer.booking_id} is ${answer.status}.`);
    }
    return;
  }
  const error = answer?.error || {};
  if (response.status === 409 && error.code === "SEAT_UNAVAILABLE") {
    attempt = null;
    const taken = error.seat_ids || [];
    deselect(taken);
    showResult("error", code, `Already taken: seat ${taken.join(", ")}. Choose other seats.`);
    return;
  }
  if (response.status === 409 && error.code === "IDEMPOTENCY_IN_PROGRESS") {
    showResult("error", code, "This attempt is still being processed; press Book again for its answer.");
    return;
  }
  attempt = null; // refused before anything was booked (a 401, 403, 429 included): a new attempt, a new key
  const refusedForWhy = [401, 429].includes(response.status) || error.code === "ADMISSION_REQUIRED";
  showResult("error", code, refusedForWhy ? refusal(answer, response) : error.message || "The booking was refused.");
}

async function follow(booking, item) {
  let delay = FOLLOW_FIRST_MS;
  const deadline = Date.now() + FOLLOW_TIMEOUT_MS;
  let current = booking;
  // Until the booking is final, the deadline, or the list no longer shows it (another user signed in).
  while (current.status === "PENDING" && Date.now() < deadline && item.isConnected) {
    await sleep(delay);
    delay = Math.min(delay * 1.5, FOLLOW_MAX_MS);
    if (!session) continue; // signed out (a 401): followed again once the user signs back in
    try {
      const response = await fetchAsUser(`bookings/${encodeURIComponent(booking.booking_id)}`, { cache: "no-store" });
      if (!response.ok) continue;
      current = await response.json();
    } catch {
      continue;
    }
  }
  if (!item.isConnected) return;
  updateBooking(item, current);
  if (current.status === "PENDING") {
    showResult("error", "", `Booking ${current.booking_id} is still PENDING; it will reach a final status.`);
  } else if (current.status === "CONFIRMED" || current.status === "HELD") {
    showResult("ok", "", `Booking ${current.booking_id}: PENDING → ${current.status}.`);
  } else {
    const reason = current.reason ? ` (${current.reason})` : "";
    showResult("error", "", `Booking ${current.booking_id}: PENDING → ${current.status}${reason}.`);
  }
  pollNow();
}

function addBooking(booking) {
  const item = document.createElement("li");
  item.dataset.bookingId = booking.booking_id;
  ui.bookings.prepend(item);
  ui.noBookings.hidden = true;
  updateBooking(item, booking);
  return item;
}

function updateBooking(item, booking) {
  const status = Object.assign(document.createElement("span"),
    { className: `status ${booking.status}`, textContent: booking.status });
  const text = document.createElement("span");
  const seats = booking.seat_ids.length ? `Seat ${booking.seat_ids.join(", ")}` : "Seats to be chosen";
  text.textContent = `${seats} · performance ${booking.performance_id} · ${booking.user_id}`;
  const parts = [status, text];
  item.dataset.status = booking.status;
  if (booking.status === "HELD") parts.push(...holdControls(booking, item));
  if (["PENDING", "CONFIRMED", "HELD"].includes(booking.status)) {
    const cancel = Object.assign(document.createElement("button"),
      { type: "button", className: "secondary", textContent: "Cancel" });
    cancel.setAttribute("aria-label", `Cancel booking of seat ${booking.seat_ids.join(", ")}`);
    cancel.addEventListener("click", () => cancelBooking(booking, item, cancel));
    parts.push(cancel);
  }
  item.replaceChildren(...parts);
}

// --- holds: a countdown to expires_at, Confirm (pay) and Extend ------------------------------------------------
function holdControls(booking, item) {
  const countdown = Object.assign(document.createElement("span"), { className: "countdown" });
  countdown.setAttribute("aria-label", "time left on the hold");
  let timer = 0;
  const tick = () => {
    if (timer && !countdown.isConnected) return clearInterval(timer); // the booking was redrawn
    const left = Math.max(0, Math.round((Date.parse(booking.expires_at) - Date.now()) / 1000));
    countdown.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")} left`;
    if (left === 0) {
      clearInterval(timer);
      updateBooking(item, { ...booking, status: "EXPIRED", reason: "the hold expired" });
      pollNow();
    }
  };
  tick();
  timer = setInterval(tick, 1000);
  const confirm = Object.assign(document.createElement("button"), { type: "button", className: "confirm",
    textContent: "Confirm" });
  confirm.setAttribute("aria-label", `Confirm (pay for) the hold of seat ${booking.seat_ids.join(", ")}`);
  confirm.addEventListener("click", () => holdAction(booking, item, confirm, "confirm",
    { payment_reference: `page-${newKey()}` }));
  const extend = Object.assign(document.createElement("button"), { type: "button", className: "secondary extend",
    textContent: "Extend" });
  extend.setAttribute("aria-label", `Extend the hold of seat ${booking.seat_ids.join(", ")}`);
  extend.addEventListener("click", () => holdAction(booking, item, extend, "extend", null));
  return [countdown, confirm, extend];
}

async function holdAction(booking, item, button, action, body) {
  button.disabled = true;
  try {
    const response = await writeAsUser(`bookings/${encodeURIComponent(booking.booking_id)}/${action}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    }, booking.performance_id);
    const answer = await readJson(response);
    const code = `${response.status} ${REASONS[response.status] || ""}`.trim();
    if (response.ok) {
      updateBooking(item, answer);
      const done = action === "confirm" ? "confirmed" : `extended to ${answer.expires_at}`;
      showResult("ok", code, `Booking ${answer.booking_id} ${done}.`);
    } else {
      button.disabled = false;
      if (answer?.error?.code === "HOLD_EXPIRED") updateBooking(item, { ...booking, status: "EXPIRED" });
      showResult("error", code, refusal(answer, response));
    }
  } catch (error) {
    button.disabled = false;
    showResult("error", "", `No answer (${error.message}); try again.`);
  }
  pollNow();
}

async function cancelBooking(booking, item, button) {
  button.disabled = true;
  try {
    const response = await writeAsUser(`bookings/${encodeURIComponent(booking.booking_id)}`, {
      method: "DELETE",
      headers: { "Idempotency-Key": newKey() },
    }, booking.performance_id);
    const answer = await readJson(response);
    const code = `${response.status} ${REASONS[response.status] || ""}`.trim();
    if (response.ok) {
      updateBooking(item, answer);
      showResult("ok", code, `Booking ${answer.booking_id} cancelled; seat ${answer.seat_ids.join(", ")} available again.`);
    } else {
      button.disabled = false;
      showResult("error", code, refusal(answer, response));
    }
  } catch (error) {
    button.disabled = false;
    showResult("error", "", `No answer (${error.message}); try again.`);
  }
  pollNow();
}

// --- start ---------------------------------------------------------------------------------------------------
let resizeTimer = 0;
new ResizeObserver(() => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    if (map.shape) layout();
  }, 100);
}).observe(ui.wrap);

ui.event.addEventListener("change", () => void chooseEvent());
ui.performance.addEventListener("change", () => showPerformance(Number(ui.performance.value)));
drawLegend();
// A sign-in this tab kept (the page was reloaded) goes on where it was; else the page starts signed out.
const kept = loadSession();
if (kept) startSession(kept);
else showScreen("sign-in");

// For automation and debugging (the browser tests read what the canvas shows through this).
window.seatMapPage = Object.freeze({
  seatStatus: (id) => STATUS_NAMES[map.status[map.index.get(id)]],
  seatCentre: (id) => {
    const k = map.index.get(id);
    return k === undefined ? null : { x: map.x[k] + map.cell / 2 - 0.5, y: map.y[k] + map.cell / 2 - 0.5 };
  },
  seatColour: (id) => {
    const k = map.index.get(id);
    if (k === undefined) return null;
    const ratio = window.devicePixelRatio || 1;
    // A pixel of the seat's fill, clear of its mark, its rounded corners and a focus ring, as drawn.
    const s = map.cell - (map.cell >= 10 ? 2 : 1);
    const [r, g, b] = ctx.getImageData(Math.floor((map.x[k] + s / 2) * ratio),
      Math.floor((map.y[k] + Math.max(s * 0.2, 0.5)) * ratio), 1, 1).data;
    return `#${[r, g, b].map((v) => v.toString(16).padStart(2, "0")).join("")}`;
  },
  colours: COLOURS,
  stats: () => ({ ...stats, version: map.version }),
});
window.seatMapStats = stats; // live: what following the map has cost this tab (see stats above)

const linked = Number(new URLSearchParams(location.hash.slice(1)).get("performance"));
if (linked) showPerformance(linked);
void loadEvents();
