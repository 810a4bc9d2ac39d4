// The Calls view: the recent calls' reports (GET /api/calls; agent/reports.py writes them when
// a call ends) and one call as a timeline: the caller's and the agent's audio lanes (their
// waveforms when the call was recorded, when each spoke otherwise), the transcripts at their
// times, interruptions and STT changes, and each turn's latency as a bar split by stage.
import { RoomEvent, Track } from 'livekit-client';

const SVG = 'http://www.w3.org/2000/svg';
// the stages of a turn, in seconds after the end of the caller's speech (docs/calls.md)
const STAGES = [
  ['final_transcript', 'final transcript', '#6a9fd4'],
  ['end_of_turn', 'end of turn decided', '#9a86cf'],
  ['llm_first_token', 'LLM first token', '#e0a040'],
  ['tts_first_audio', 'TTS first audio', '#5fae5f'],
  ['first_audio_out', 'first audio out', '#c8574f'],
];
const WIDTH = 720;
const LANE_H = 36;

let accessKey = () => '';
let audioUrl = null;

function el(tag, attrs = {}, text = '') {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

function svg(tag, attrs = {}, title = '') {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (title) node.appendChild(svg('title')).textContent = title;
  return node;
}

function svgText(attrs, text) {
  const node = svg('text', attrs);
  node.textContent = text;
  return node;
}

async function api(path) {
  const key = accessKey();
  const res = await fetch(path, { headers: key ? { Authorization: `Bearer ${key}` } : {} });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new Error(body.error || `${path}: HTTP ${res.status}`);
  }
  return res;
}

const ms = (s) => (s === null || s === undefined ? '–' : `${Math.round(s * 1000)}`);
const clock = (t) => new Date(t * 1000).toLocaleString();

// -- the list -----------------------------------------------------------------------------------

async function showList() {
  const view = document.getElementById('calls');
  view.replaceChildren(el('p', {}, 'loading…'));
  let calls;
  try {
    calls = await (await api('/api/calls')).json();
  } catch (e) {
    view.replaceChildren(el('p', { class: 'calls-error' }, e.message));
    return;
  }
  const table = el('table', { id: 'calls-list' });
  const head = table.appendChild(el('tr'));
  for (const h of ['started', 'room', 'duration', 'turns', 'median ms', 'worst ms', 'audio']) {
    head.appendChild(el('th', {}, h));
  }
  for (const c of calls) {
    const row = table.appendChild(el('tr', { 'data-room': c.room }));
    const open = el('button', { type: 'button', class: 'link' }, c.room);
    open.addEventListener('click', () => showCall(c.room));
    row.append(
      el('td', {}, clock(c.started_at)),
      el('td').appendChild(open).parentNode,
      el('td', {}, `${c.duration_s.toFixed(0)} s`),
      el('td', {}, String(c.turns)),
      el('td', {}, ms(c.latency_median_s)),
      el('td', {}, ms(c.latency_worst_s)),
      el('td', {}, c.recording ? 'yes' : ''),
    );
  }
  view.replaceChildren(calls.length ? table : el('p', {}, 'no calls yet'));
}

// -- one call -----------------------------------------------------------------------------------

async function showCall(room) {
  const view = document.getElementById('calls');
  const report = await (await api(`/api/calls/${encodeURIComponent(room)}`)).json();
  const back = el('button', { type: 'button' }, '← all calls');
  back.addEventListener('click', showList);
  const ended = report.ended_because.session || report.ended_because.shutdown;
  const header = el(
    'p',
    {},
    `${report.room} · ${clock(report.started_at)} · ${report.duration_s.toFixed(1)} s · ` +
      `${report.summary.turns} turns · median ${ms(report.summary.latency_median_s)} ms · ` +
      `worst ${ms(report.summary.latency_worst_s)} ms · ended: ${ended}`,
  );
  const section = el('section', { id: 'call', 'data-room': report.room });
  section.append(back, header);
  let waves = null;
  if (report.recording) {
    const blob = await (await api(`/api/calls/${encodeURIComponent(room)}/audio`)).blob();
    if (audioUrl) URL.revokeObjectURL(audioUrl);
    audioUrl = URL.createObjectURL(blob);
    section.append(el('audio', { controls: '', src: audioUrl, id: 'call-audio' }));
    waves = await envelopes(blob).catch(() => null); // speech activity if it cannot decode
  }
  section.append(timeline(report, waves), turnBars(report), transcriptList(report));
  view.replaceChildren(section);
}

// the recording's two channels (caller, agent) as peak levels per pixel column
async function envelopes(blob) {
  const ctx = new OfflineAudioContext(2, 1, 8000);
  const audio = await ctx.decodeAudioData(await blob.arrayBuffer());
  return [0, 1].map((ch) => {
    const data = audio.getChannelData(Math.min(ch, audio.numberOfChannels - 1));
    return { peaks: data, rate: audio.sampleRate };
  });
}

function timeline(report, waves) {
  const t0 = report.started_at;
  const span = Math.max(report.ended_at - t0, 1);
  const x = (t) => ((t - t0) / span) * (WIDTH - 60) + 55;
  const height = 2 * LANE_H + 40;
  const chart = svg('svg', { id: 'call-timeline', width: WIDTH, height, viewBox: `0 0 ${WIDTH} ${height}` });
  const lanes = [
    ['caller', report.speech.user, '#3b73b9'],
    ['agent', report.speech.agent, '#3c8c3c'],
  ];
  lanes.forEach(([name, spans, colour], i) => {
    const y = 10 + i * LANE_H;
    chart.append(svgText({ x: 0, y: y + LANE_H / 2 + 4, class: 'lane' }, name));
    chart.append(svg('rect', { x: 55, y, width: WIDTH - 60, height: LANE_H - 6, fill: '#f0f0ec' }));
    if (waves) {
      chart.append(waveform(waves[i], report.recording_started_at || t0, x, y, colour));
    } else {
      for (const [a, b] of spans) {
        chart.append(
          svg('rect', { x: x(a), y: y + 4, width: Math.max(x(b) - x(a), 1), height: LANE_H - 14, fill: colour, class: 'speech' },
            `${name} speaking ${(a - t0).toFixed(1)}–${(b - t0).toFixed(1)} s`),
        );
      }
    }
  });
  // final transcripts on the caller's lane; interruptions on the agent's
  for (const t of report.transcripts.filter((t) => t.final)) {
    chart.append(svg('circle', { cx: x(t.at), cy: 10 + LANE_H - 8, r: 4, fill: '#1d3f6e', class: 'final' },
      `+${(t.at - t0).toFixed(1)} s (${t.stt}, ${t.language}): ${t.text}`));
  }
  for (const turn of report.turns.filter((t) => t.interrupted && t.agent.started_speaking_at)) {
    // where the agent stopped speaking: the end of its speech that this reply started
    const start = turn.agent.started_speaking_at;
    const span = report.speech.agent.find(([a, b]) => b >= start && a <= start + 0.5);
    const at = span ? span[1] : turn.agent.stopped_speaking_at || start;
    chart.append(svg('path', { d: `M${x(at)} ${10 + LANE_H} l-5 10 h10 z`, fill: '#c62828', class: 'interruption' },
      `interrupted; the caller heard: ${turn.agent.text}`));
  }
  for (const change of report.stt_changes) {
    chart.append(svg('line', { x1: x(change.at), x2: x(change.at), y1: 6, y2: 2 * LANE_H + 8, stroke: '#b04', 'stroke-dasharray': '4 3', class: 'stt-change' },
      `STT ${change.kind}: ${change.stt}`));
  }
  for (let s = 0; s <= span; s += span > 60 ? 10 : 5) {
    chart.append(svgText({ x: x(t0 + s), y: height - 8, class: 'tick' }, `${s}s`));
  }
  return chart;
}

function waveform(wave, startedAt, x, y, colour) {
  const { peaks, rate } = wave;
  const columns = WIDTH - 60;
  const perColumn = Math.max(1, Math.floor(peaks.length / columns));
  let d = '';
  const mid = y + (LANE_H - 6) / 2;
  for (let c = 0; c * perColumn < peaks.length; c++) {
    let peak = 0;
    for (let i = c * perColumn; i < Math.min((c + 1) * perColumn, peaks.length); i++) {
      peak = Math.max(peak, Math.abs(peaks[i]));
    }
    const at = x(startedAt + (c * perColumn) / rate);
    const h = Math.min(1, peak * 3) * (LANE_H - 8) / 2;
    d += `M${at.toFixed(1)} ${(mid - h).toFixed(1)}V${(mid + h).toFixed(1)}`;
  }
  return svg('path', { d, stroke: colour, 'stroke-width': 1, class: 'wave' });
}

// each turn: a bar from the end of the caller's speech, split at each stage reached
function turnBars(report) {
  const turns = report.turns.filter((t) => t.user);
  const rows = turns.map((t, n) => ({ label: `${n + 1}. ${t.user.text.slice(0, 28)}`, ...t }));
  const chart = stageBars(rows);
  chart.id = 'turn-bars';
  return chart;
}

function stageBars(turns) {
  const worst = Math.max(1, ...turns.map((t) => t.stages.first_audio_out || 0));
  const scale = (WIDTH - 340) / worst; // room left for the label and the total
  const rowH = 22;
  const height = turns.length * rowH + 40;
  const chart = svg('svg', { width: WIDTH, height, viewBox: `0 0 ${WIDTH} ${height}` });
  turns.forEach((turn, n) => {
    const y = n * rowH + 4;
    const row = chart.appendChild(svg('g', { class: 'turn-bar', 'data-total': turn.stages.first_audio_out ?? '' }));
    row.append(svgText({ x: 0, y: y + 14, class: 'said' }, turn.label));
    let reached = 0;
    for (const [key, label, colour] of STAGES) {
      const at = turn.stages[key];
      if (at === null || at === undefined || at <= reached) continue;
      row.append(svg('rect', { x: 200 + reached * scale, y, width: (at - reached) * scale, height: rowH - 6, fill: colour, class: 'stage' },
        `${label} at ${ms(at)} ms (+${ms(at - reached)} ms)`));
      reached = at;
    }
    const total = `${ms(turn.stages.first_audio_out)} ms${turn.interrupted ? ' · interrupted' : ''}`;
    row.append(svgText({ x: 205 + reached * scale, y: y + 14, class: 'total' }, total));
  });
  STAGES.forEach(([, label, colour], i) => {
    const lx = (i * WIDTH) / STAGES.length;
    chart.append(svg('rect', { x: lx, y: height - 22, width: 10, height: 10, fill: colour }));
    chart.append(svgText({ x: lx + 14, y: height - 13, class: 'legend' }, label));
  });
  return chart;
}

function transcriptList(report) {
  const list = el('ol', { id: 'call-transcript' });
  for (const t of report.transcripts.filter((t) => t.final)) {
    list.append(el('li', {}, `+${(t.at - report.started_at).toFixed(1)} s  [${t.stt}, ${t.language}]  ${t.text}`));
  }
  for (const turn of report.turns) {
    const at = turn.agent.started_speaking_at;
    if (!at) continue;
    const item = el('li', { class: 'agent' }, `+${(at - report.started_at).toFixed(1)} s  agent${turn.interrupted ? ' (cut off; heard)' : ''}: ${turn.agent.text}`);
    list.append(item);
  }
  const items = [...list.children].sort((a, b) => parseFloat(a.textContent.slice(1)) - parseFloat(b.textContent.slice(1)));
  list.replaceChildren(...items);
  return list;
}

// -- during a call: each turn's stages as the agent publishes them, and the two levels ---------

const TURN_ATTRIBUTE = 'turn_latency'; // agent/reports.py
const live = { turns: [], meters: [], ctx: null, timer: null };

function meter(mediaStreamTrack, id) {
  live.ctx ??= new AudioContext();
  const analyser = live.ctx.createAnalyser();
  live.ctx.createMediaStreamSource(new MediaStream([mediaStreamTrack])).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  live.meters.push(() => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    document.getElementById(id).value = Math.min(1, 4 * Math.sqrt(sum / buf.length));
  });
  live.timer ??= setInterval(() => live.meters.forEach((update) => update()), 100);
}

function showLiveTurn(value) {
  let turn;
  try {
    turn = JSON.parse(value);
  } catch {
    return;
  }
  live.turns.push({ label: `turn ${live.turns.length + 1}`, ...turn });
  const chart = stageBars(live.turns.slice(-5));
  chart.id = 'live-bars';
  document.getElementById('live-turns').replaceChildren(chart);
}

export function watchCall(room) {
  room.on(RoomEvent.LocalTrackPublished, (pub) => {
    if (pub.kind === Track.Kind.Audio && pub.track) meter(pub.track.mediaStreamTrack, 'mic-level');
  });
  room.on(RoomEvent.TrackSubscribed, (track) => {
    if (track.kind === Track.Kind.Audio) meter(track.mediaStreamTrack, 'agent-level');
  });
  room.on(RoomEvent.ParticipantAttributesChanged, (changed, participant) => {
    if (participant !== room.localParticipant && TURN_ATTRIBUTE in changed) {
      showLiveTurn(changed[TURN_ATTRIBUTE]);
    }
  });
  room.on(RoomEvent.Disconnected, () => {
    clearInterval(live.timer);
    live.ctx?.close();
    Object.assign(live, { turns: [], meters: [], ctx: null, timer: null });
  });
}

export function setupCalls(getKey) {
  accessKey = getKey;
  const view = document.getElementById('calls');
  document.getElementById('calls-button').addEventListener('click', () => {
    view.hidden = !view.hidden;
    if (!view.hidden) showList();
  });
}
