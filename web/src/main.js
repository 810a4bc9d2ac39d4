// The page: get a token from /api/token, join the room (the token dispatches the agent), play
// the agent's audio, show both sides' transcripts from the `lk.transcription` text streams, and
// set the `language` / `stt` participant attributes the agent listens to.
import { DisconnectReason, Room, RoomEvent, Track } from 'livekit-client';
import { setupCalls, watchCall } from './calls.js';

const $ = (id) => document.getElementById(id);
const TRANSCRIPTION_TOPIC = 'lk.transcription';
// the agent sends the language of each final user transcript here ({"text", "language"}), and
// publishes the language it answers in as its `answer_language` attribute (agent/switching.py)
const LANGUAGE_TOPIC = 'transcript_language';
// The token dispatches the agent; a worker with a free slot joins within a second or two, and a
// full one answers too: an agent with the `busy` attribute says and writes that all agents are
// busy, then leaves (agent/busy.py); the page shows its words and leaves as well. No agent at
// all by AGENT_WAIT_MS means no worker is running: say so rather than wait (as `call` does).
const AGENT_WAIT_MS = 4_500;
const NO_WORKER = 'no agent answered: is a worker running? try again later';
const languageNames = new Intl.DisplayNames(['en'], { type: 'language' });

let room = null;
let catalog = null;
let agentCame = false; // to this room: the no-worker timer stays quiet
let toldBusy = false; // the busy agent's words are shown: later errors must not replace them
let answerLanguage = '';
const heardLanguages = new Map(); // transcript text -> language, until its line is final

function showError(message) {
  $('error').textContent = message;
  $('error').hidden = !message;
}

function setState(text) {
  $('state').textContent = text;
}

// -- the pickers ------------------------------------------------------------------------------

function languageLabel(code) {
  if (code === 'multi') return 'Multilingual (auto)';
  try {
    return `${languageNames.of(code)} (${code})`;
  } catch {
    return code;
  }
}

function fillLanguages(keep) {
  const model = catalog.stt.find((m) => m.id === $('stt').value);
  const codes = model.languages.length ? model.languages : catalog.languages;
  const select = $('language');
  select.replaceChildren(
    ...codes.map((code) => new Option(languageLabel(code), code)),
  );
  select.value = codes.includes(keep) ? keep : model.default_language;
}

async function loadCatalog() {
  const res = await fetch('/api/catalog');
  if (!res.ok) throw new Error(`the catalog did not load (${res.status})`);
  catalog = await res.json();
  const select = $('stt');
  for (const model of catalog.stt) {
    // says where it runs: this machine, the local gateway (offline) or a cloud service
    const option = new Option(`${model.label} · ${model.runs}`, model.id);
    option.disabled = !model.available;
    if (!model.available) option.title = model.why;
    select.append(option);
  }
  select.value = catalog.default.stt;
  fillLanguages(catalog.default.language);
}

function chosenAttributes() {
  return { language: $('language').value, stt: $('stt').value };
}

async function publishChoice() {
  if (!room || room.state !== 'connected') return; // sent with the token when joining
  try {
    await room.localParticipant.setAttributes(chosenAttributes());
  } catch (e) {
    showError(`could not change the setting: ${e.message}`);
  }
}

// -- the token --------------------------------------------------------------------------------

function accessKey() {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get('key');
  return $('key').value || fromUrl || '';
}

async function fetchToken() {
  const headers = { 'Content-Type': 'application/json' };
  const key = accessKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  let res;
  try {
    res = await fetch('/api/token', {
      method: 'POST',
      headers,
      body: JSON.stringify({ participant_attributes: chosenAttributes() }),
    });
  } catch {
    throw new Error('the page server is not answering: is `python -m agent web` running?');
  }
  const body = await res.json().catch(() => ({}));
  if (res.status === 401) {
    $('key-field').hidden = false;
    throw new Error('token refused: enter the access key (TOKEN_ENDPOINT_SECRET) and press Start');
  }
  if (!res.ok) throw new Error(`token refused (${res.status}): ${body.error || res.statusText}`);
  return body;
}

// -- transcripts ------------------------------------------------------------------------------

// One list item per segment: interim user transcripts replace each other (same lk.segment_id),
// the agent's text arrives as deltas of one stream per segment.
function segmentItem(segmentId, speaker) {
  let item = document.querySelector(`#transcript li[data-segment="${CSS.escape(segmentId)}"]`);
  if (!item) {
    item = document.createElement('li');
    item.dataset.segment = segmentId;
    item.dataset.speaker = speaker;
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = speaker === 'you' ? 'You' : 'Agent';
    const text = document.createElement('span');
    text.className = 'text';
    item.append(who, text);
    $('transcript').append(item);
  }
  return item;
}

// each line says its language: the user's from the agent's message about that transcript, the
// agent's from the language it answered in when the line began
function showLanguage(item, code) {
  if (!code) return;
  let tag = item.querySelector('.lang');
  if (!tag) {
    tag = document.createElement('span');
    tag.className = 'lang';
    item.querySelector('.who').after(tag);
  }
  tag.textContent = code;
  tag.title = languageLabel(code);
}

function labelHeard() {
  const finals = document.querySelectorAll('#transcript li[data-speaker="you"][data-final="true"]');
  for (const item of finals) {
    const code = heardLanguages.get(item.querySelector('.text').textContent);
    if (code && !item.querySelector('.lang')) showLanguage(item, code);
  }
}

async function onLanguage(reader) {
  const { text, language } = JSON.parse(await reader.readAll());
  heardLanguages.set(text, language);
  labelHeard();
}

function speakerOf(participantIdentity, trackId) {
  const local = room.localParticipant;
  // the agent sends user transcripts on the user's behalf; the transcribed track tells for sure
  const mine = participantIdentity === local.identity || local.trackPublications.has(trackId);
  return mine ? 'you' : 'agent';
}

function isBusyAgent(participant) {
  return !!participant?.isAgent && participant.attributes.busy === 'true';
}

function showBusy(message) {
  toldBusy = true;
  showError(message);
}

async function onTranscription(reader, participantInfo) {
  const attributes = reader.info.attributes ?? {};
  const segmentId = attributes['lk.segment_id'] ?? reader.info.id;
  const speaker = speakerOf(participantInfo.identity, attributes['lk.transcribed_track_id']);
  const item = segmentItem(segmentId, speaker);
  item.dataset.final = 'false';
  if (speaker === 'agent' && !item.querySelector('.lang')) showLanguage(item, answerLanguage);
  let text = '';
  try {
    for await (const chunk of reader) {
      text += chunk;
      item.querySelector('.text').textContent = text;
      item.scrollIntoView({ block: 'nearest' });
    }
  } catch (e) {
    console.warn('transcription stream ended early', e);
  }
  // the agent's final flag comes in the stream's trailer, merged into info after the end
  const final = (reader.info.attributes ?? {})['lk.transcription_final'] === 'true';
  item.dataset.final = String(final || speaker === 'agent');
  if (isBusyAgent(room?.remoteParticipants.get(participantInfo.identity))) showBusy(text);
  if (speaker === 'you' && final) labelHeard();
}

// -- the call ---------------------------------------------------------------------------------

// -- push-to-talk (the agent's TURN_DETECTION=manual) -------------------------------------------

// The agent answers only when told the turn is over: holding the button calls its RPC method
// start_turn (it stops talking and listens), releasing calls end_turn (it answers).
let agentIdentity = '';
let talking = false;

async function callAgent(method) {
  try {
    await room.localParticipant.performRpc({ destinationIdentity: agentIdentity, method, payload: '' });
  } catch (e) {
    showError(`push-to-talk: ${method} failed: ${e.message}`);
  }
}

function startTalking(event) {
  event.preventDefault();
  if (talking || !room || !agentIdentity) return;
  talking = true;
  $('talk').dataset.talking = 'true';
  $('talk').textContent = 'Release to send';
  callAgent('start_turn');
}

function stopTalking() {
  if (!talking) return;
  talking = false;
  $('talk').dataset.talking = 'false';
  $('talk').textContent = 'Hold to talk';
  callAgent('end_turn');
}

function showPushToTalk(manual) {
  $('talk').hidden = !manual;
  if (!manual) stopTalking();
}

// the agent publishes its state, the STT it runs and why it refused a change (stt_error)
function showAgent(attributes) {
  if ('turn_detection' in attributes) showPushToTalk(attributes.turn_detection === 'manual');
  if ('lk.agent.state' in attributes) $('agent-state').textContent = attributes['lk.agent.state'];
  if ('stt_active' in attributes) $('stt-active').textContent = attributes.stt_active;
  if ('answer_language' in attributes) answerLanguage = attributes.answer_language;
  if ('stt_error' in attributes) showError(attributes.stt_error ? `agent: ${attributes.stt_error}` : '');
}

function wire(r) {
  r.on(RoomEvent.ConnectionStateChanged, (state) => setState(state));
  r.on(RoomEvent.TrackSubscribed, (track) => {
    if (track.kind !== Track.Kind.Audio) return;
    const element = track.attach();
    element.dataset.agentAudio = 'true';
    $('audio').append(element);
  });
  r.on(RoomEvent.TrackUnsubscribed, (track) => track.detach().forEach((el) => el.remove()));
  r.on(RoomEvent.ParticipantAttributesChanged, (changed, participant) => {
    if (participant === r.localParticipant) return;
    if (participant.isAgent) agentIdentity = participant.identity;
    showAgent(changed);
  });
  r.on(RoomEvent.ParticipantConnected, (p) => {
    if (!p.isAgent) return;
    agentCame = true;
    agentIdentity = p.identity;
    showAgent({ 'lk.agent.state': 'joined', ...p.attributes });
  });
  r.on(RoomEvent.ParticipantDisconnected, (p) => {
    if (!p.isAgent) return;
    $('agent-state').textContent = 'left';
    showPushToTalk(false);
    if (isBusyAgent(p)) r.disconnect(); // it said all agents are busy: the call is over
  });
  r.on(RoomEvent.AudioPlaybackStatusChanged, () => {
    if (!r.canPlaybackAudio) showError('the browser blocked audio playback: press Start again');
  });
  r.on(RoomEvent.MediaDevicesError, (e) => showError(`microphone: ${e.message}`));
  // livekit-server went away: the client retries, and is back in a new room when the server
  // restarted (a new room id: the old room died with the server, and the call's agent may come
  // back into it or not, so the call cannot go on reliably), or in a room the agent has left.
  // Either way the call is over, and the page says so at once instead of staying "connected"
  // to a room where nobody answers (the agent's job ends by itself, agent/lost_calls.py).
  let roomId = '';
  r.once(RoomEvent.Connected, () => r.getSid().then((sid) => (roomId = sid), () => {}));
  r.on(RoomEvent.Reconnecting, () => setState('reconnecting'));
  r.on(RoomEvent.Reconnected, async () => {
    setState('connected');
    const agentHere = [...r.remoteParticipants.values()].some((p) => p.isAgent);
    const restarted = (await r.getSid().catch(() => '')) !== roomId;
    if (restarted || (agentCame && !agentHere)) {
      showError('the call ended: the connection to the server was lost; press Start for a new call');
      r.disconnect();
    }
  });
  r.on(RoomEvent.Disconnected, (reason) => {
    if (reason !== undefined && reason !== DisconnectReason.CLIENT_INITIATED && !toldBusy) {
      showError(`the call ended (${DisconnectReason[reason] ?? reason}): press Start for a new call`);
    }
    setState('disconnected');
    for (const id of ['agent-state', 'room', 'stt-active']) $(id).textContent = '–';
    showPushToTalk(false);
    setButtons(false);
    if (room === r) room = null;
    console.info('disconnected', reason);
  });
  r.registerTextStreamHandler(TRANSCRIPTION_TOPIC, onTranscription);
  watchCall(r); // each turn's latency and the two levels, live (calls.js)
  r.registerTextStreamHandler(LANGUAGE_TOPIC, onLanguage);
}

function setButtons(connected) {
  $('start').disabled = connected;
  $('mute').disabled = !connected;
  $('stop').disabled = !connected;
  $('mute').textContent = 'Mute';
}

function micError(e) {
  if (e.name === 'NotAllowedError') return 'microphone permission denied: allow it and press Start';
  if (e.name === 'NotFoundError') return 'no microphone found: connect one and press Start';
  return `the microphone could not start: ${e.message}`;
}

async function start() {
  const clickedAt = Date.now();
  // Once "busy" is shown, the microphone still starting (slow on a loaded machine) fails
  // because the room is gone: that error must not replace the one that says why.
  toldBusy = false;
  agentCame = false;
  const explain = (message) => toldBusy || showError(message);
  showError('');
  $('start').disabled = true;
  try {
    const { server_url: url, participant_token: token } = await fetchToken();
    const r = new Room();
    wire(r);
    room = r;
    setState('connecting');
    try {
      await r.connect(url, token);
    } catch (e) {
      room = null;
      throw new Error(`could not join the LiveKit server at ${url}: ${e.message}`);
    }
    $('room').textContent = r.name;
    setTimeout(() => {
      const joined = agentCame || [...r.remoteParticipants.values()].some((p) => p.isAgent);
      if (room === r && !joined) {
        console.info('no agent joined: no worker is running for this agent name');
        showBusy(NO_WORKER); // first: leaving the room takes a while on a loaded machine
        r.disconnect();
      }
    }, AGENT_WAIT_MS - (Date.now() - clickedAt));
    await r.startAudio(); // inside the click: lets the agent's audio play
    setButtons(true);
    try {
      await r.localParticipant.setMicrophoneEnabled(true);
    } catch (e) {
      explain(micError(e)); // stay in the room: the agent can still be heard
    }
  } catch (e) {
    explain(e.message);
    setState('disconnected');
    $('start').disabled = false;
  }
}

async function toggleMute() {
  const enabled = room.localParticipant.isMicrophoneEnabled;
  try {
    await room.localParticipant.setMicrophoneEnabled(!enabled);
    $('mute').textContent = enabled ? 'Unmute' : 'Mute';
  } catch (e) {
    showError(micError(e));
  }
}

async function stop() {
  if (room) await room.disconnect();
}

$('start').addEventListener('click', start);
$('mute').addEventListener('click', toggleMute);
$('stop').addEventListener('click', stop);
$('stt').addEventListener('change', () => {
  fillLanguages($('language').value);
  publishChoice();
});
$('language').addEventListener('change', publishChoice);
$('talk').addEventListener('pointerdown', startTalking);
for (const type of ['pointerup', 'pointercancel', 'pointerleave']) {
  $('talk').addEventListener(type, stopTalking);
}
// the space bar works as the button while push-to-talk is on (not while typing in a field)
window.addEventListener('keydown', (e) => {
  if (e.code === 'Space' && !$('talk').hidden && !e.repeat && !e.target.closest('input, select')) {
    startTalking(e);
  }
});
window.addEventListener('keyup', (e) => {
  if (e.code === 'Space' && !$('talk').hidden) stopTalking();
});
window.addEventListener('pagehide', () => room?.disconnect());
loadCatalog().catch((e) => showError(e.message));
setupCalls(accessKey); // the Calls view (calls.js)
