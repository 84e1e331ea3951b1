/*
 * cardiac_mi active learning in the MONAI Label panel's "Active Learning" tab (plain ES module, served at
 * /ohif/cardiac-mi/training.js; extension.js starts it with watchTraining()).
 *
 * MONAI Label's tab shows its bars white on white, "Training 100 %" before any training, keeps "Stop
 * Training" after training ended, and its Update Model published whatever the trainer published. This
 * module replaces its three bars and its Update Model button with a box of its own, fed by the server's
 * /viewer/training/status (cardiac_mi/viewer/training.py) every few seconds:
 *
 * - labelled series of the archive; the training's phase, epoch and validation Dice after each epoch;
 * - a notification when a training run ends (finished, failed or stopped), with its figures;
 * - the new model waiting for review: validation Dice of the served and the new model on the same series
 *   held out of training. "Publish new model" asks first, showing the figures; the server refuses (and the
 *   box says why) when fewer than the minimum of held-out series validated it;
 * - "Roll back" serves the previous model again (and a second click returns to the newer one).
 *
 * watchTraining() returns a function that stops it and removes the box; a second call while it runs
 * returns the same function.
 */

const STATUS_URL = '/viewer/training/status';
const ACTION_URL = '/viewer/training/';
const BOX_ID = 'cardiac-mi-training';
const POLL_MS = 4000;
const POLL_RUNNING_MS = 1500;
const MOUNT_MS = 500;
const HIDDEN_ROWS = ['Annotated:', 'Training:', 'Train Acc:']; // MONAI Label's unreadable bars

const COLOURS = {
  box: '#0d1b3e',
  border: '#3d5a99',
  text: '#ffffff',
  muted: '#c8d3ea',
  track: '#2a3350',
  annotated: '#2f80ed',
  training: '#d97706',
  good: '#16a34a',
  warn: '#fbbf24',
  bad: '#f87171',
  button: '#1f4fbf',
  buttonText: '#ffffff',
};

const PHASES = {
  starting: 'Starting',
  preparing: 'Preparing the labelled series',
  synthesizing: 'Making synthetic training slices',
  training: 'Training',
  publishing: 'Scoring the new model',
};

let running = null;

function dice(value) {
  return typeof value === 'number' ? value.toFixed(3) : '–';
}

function when(iso) {
  const date = iso ? new Date(iso) : null;
  return date && !isNaN(date) ? date.toLocaleString() : 'earlier';
}

function series(count) {
  return `${count} series`;
}

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (key === 'style') {
      Object.assign(node.style, value);
    } else if (key.startsWith('on')) {
      node.addEventListener(key.slice(2), value);
    } else {
      node.setAttribute(key, value);
    }
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

function bar(name, fraction, colour, text) {
  const percent = Math.max(0, Math.min(100, Math.round(100 * (fraction || 0))));
  return el(
    'div',
    { 'data-cmi': name, style: { margin: '4px 0 8px 0' } },
    el(
      'div',
      {
        role: 'progressbar',
        'aria-valuemin': '0',
        'aria-valuemax': '100',
        'aria-valuenow': String(percent),
        'aria-label': text,
        style: { background: COLOURS.track, borderRadius: '4px', height: '8px', overflow: 'hidden' },
      },
      el('div', { style: { width: `${percent}%`, height: '100%', background: colour } })
    ),
    el('div', { 'data-cmi-text': name, style: { color: COLOURS.text, marginTop: '2px' } }, text)
  );
}

function button(name, label, onclick, primary) {
  return el(
    'button',
    {
      type: 'button',
      'data-cmi-button': name,
      onclick,
      style: {
        background: primary ? COLOURS.button : 'transparent',
        color: COLOURS.buttonText,
        border: `1px solid ${COLOURS.border}`,
        borderRadius: '4px',
        padding: '3px 8px',
        margin: '4px 6px 0 0',
        cursor: 'pointer',
        fontSize: '13px',
      },
    },
    label
  );
}

/** What the training line says. */
function trainingText(training) {
  const { state, phase, epoch, epochs, val_dice: valDice } = training;
  if (state === 'idle') {
    return 'Not started since the server started. Update Model trains a new model on the labelled series.';
  }
  if (state === 'running') {
    const name = PHASES[phase] || 'Running';
    if (phase === 'training') {
      const done = epoch ? `, validation Dice ${dice(valDice)} after epoch ${epoch}` : '';
      return `Training: epoch ${Math.min(epoch + 1, epochs || epoch + 1)} of ${epochs || '?'} running${done}`;
    }
    return `${name}…`;
  }
  if (state === 'done') {
    return `Finished: ${epoch} of ${epochs || epoch} epochs, validation Dice ${dice(valDice)} after the last.`;
  }
  return training.message || `Training ${state}.`;
}

function diceLine(candidate) {
  const gain = typeof candidate.val_dice_before === 'number' && typeof candidate.val_dice_after === 'number'
    ? candidate.val_dice_after - candidate.val_dice_before
    : null;
  const change = gain === null ? '' : ` (${gain >= 0 ? '+' : ''}${gain.toFixed(3)})`;
  const held = candidate.validation === 'training_case'
    ? `on the ${series(candidate.train_cases)} it was trained on (no series held out)`
    : `on the same ${series(candidate.val_cases)} held out of training`;
  return `served model ${dice(candidate.val_dice_before)} → new model ${dice(candidate.val_dice_after)}${change}, ${held}`;
}

/** The Active Learning tab's content element of MONAI Label's panel, if it is on the page. */
function activeLearningTab() {
  for (const content of document.querySelectorAll('.tab-content')) {
    const buttons = [...content.querySelectorAll('button')];
    if (buttons.some(b => b.textContent.trim() === 'Next Sample')) {
      return content;
    }
  }
  return null;
}

/** Hide MONAI Label's bars and its Update Model button (this box has the real ones). */
function hideBundleParts(tab) {
  for (const row of tab.querySelectorAll('tr')) {
    const first = row.querySelector('td');
    if (first && HIDDEN_ROWS.includes(first.textContent.trim()) && !row.closest(`#${BOX_ID}`)) {
      row.style.display = 'none';
    }
  }
  for (const b of tab.querySelectorAll('button')) {
    const text = b.textContent.trim();
    if ((text === 'Update Model' || text === 'Stop Training') && !b.closest(`#${BOX_ID}`)) {
      b.style.display = 'none';
    }
  }
}

export function watchTraining({ servicesManager }) {
  if (running) {
    return running;
  }
  const services = servicesManager.services;
  let status = null;
  let problem = null; // the server did not answer
  let watchedTask = null; // a task this page saw running or started
  let confirming = false;
  let busy = false;
  let pollTimer = null;
  let stopped = false;
  const box = el('div', {
    id: BOX_ID,
    style: {
      background: COLOURS.box,
      color: COLOURS.text,
      border: `1px solid ${COLOURS.border}`,
      borderRadius: '6px',
      padding: '8px 10px',
      marginTop: '8px',
      fontSize: '13px',
      lineHeight: '1.4',
    },
  });

  function notify(type, message, duration) {
    services.uiNotificationService.show({
      title: 'Active learning',
      message,
      type,
      duration: duration || (type === 'error' ? 15000 : 12000),
    });
  }

  async function post(action, body) {
    const answer = await fetch(ACTION_URL + action, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body || {}),
      cache: 'no-store',
    });
    let data = {};
    try {
      data = await answer.json();
    } catch (ignored) {
      data = {};
    }
    if (!answer.ok) {
      const detail = typeof data.detail === 'string' ? data.detail : `the server answered HTTP ${answer.status}`;
      throw new Error(detail);
    }
    return data;
  }

  async function act(action, body, success) {
    if (busy) {
      return;
    }
    busy = true;
    render();
    try {
      const data = await post(action, body);
      const message = success(data);
      if (message) {
        notify('success', message);
      }
    } catch (error) {
      notify('error', error && error.message ? error.message : String(error));
    } finally {
      busy = false;
      confirming = false;
      await poll();
    }
  }

  function startTraining() {
    act('start', {}, data => {
      watchedTask = data.task;
      return 'Training started. Its progress shows in the Active Learning tab; the served model stays until you publish a new one.';
    });
  }

  function stopTraining() {
    act('stop', {}, () => null);
  }

  function publish() {
    const candidate = status && status.candidate;
    act('publish', { run: candidate ? candidate.run : null }, data => data.message);
  }

  function rollBack() {
    act('rollback', {}, data => data.message);
  }

  function render() {
    box.replaceChildren(el('div', { style: { fontWeight: 'bold', marginBottom: '4px' } }, 'Active learning'));
    if (!status) {
      box.append(el('div', { style: { color: COLOURS.muted } }, problem || 'Asking the server…'));
      return;
    }
    const { annotated, training, candidate, served } = status;
    const total = annotated.total || 0;
    box.append(
      bar('annotated', total ? annotated.labelled / total : 0, COLOURS.annotated,
        `Annotated: ${annotated.labelled} of ${total} series have a saved label`)
    );
    const fraction = training.state === 'running' || training.state === 'done'
      ? (training.epochs ? training.epoch / training.epochs : 0)
      : 0;
    box.append(bar('training', fraction, COLOURS.training, trainingText(training)));
    if (training.state === 'failed' || training.state === 'stopped') {
      box.lastChild.querySelector('[data-cmi-text]').style.color = COLOURS.bad;
    }
    // the buttons first: notifications pop up over the bottom of the panel
    const buttons = el('div', { 'data-cmi': 'actions' });
    const isRunning = training.state === 'running';
    buttons.append(isRunning
      ? button('stop', 'Stop Training', stopTraining, false)
      : button('start', 'Update Model', startTraining, true));
    if (candidate && !isRunning && !candidate.served) {
      buttons.append(button('publish', 'Publish new model…', () => {
        if (candidate.publishable) {
          confirming = true;
          render();
        } else {
          publish(); // the server says why not, in words
        }
      }, false));
    }
    if (served.previous && !isRunning) {
      buttons.append(button('rollback', 'Roll back to the previous model', rollBack, false));
    }
    box.append(buttons);
    if (confirming && candidate && candidate.publishable && !isRunning) {
      box.append(el('div', {
        'data-cmi': 'confirm',
        style: { marginTop: '8px', padding: '6px', border: `1px solid ${COLOURS.warn}`, borderRadius: '4px' },
      },
        el('div', { style: { fontWeight: 'bold' } }, 'Replace the served model with the new one?'),
        el('div', { 'data-cmi-text': 'figures' }, `Validation Dice: ${diceLine(candidate)}.`),
        candidate.val_dice_after < candidate.val_dice_before
          ? el('div', { 'data-cmi-text': 'worse', style: { color: COLOURS.warn } },
            'The new model scores lower than the served one on these series.')
          : null,
        el('div', { style: { color: COLOURS.muted } }, 'The served model is kept: Roll back returns to it.'),
        button('confirm-publish', 'Publish', publish, true),
        button('cancel', 'Cancel', () => { confirming = false; render(); }, false)
      ));
    }
    if (candidate && !isRunning) {
      const review = el('div', { 'data-cmi': 'review', style: { marginTop: '6px' } });
      review.append(el('div', { 'data-cmi-text': 'dice' },
        `New model (trained ${when(candidate.finished)}). Validation Dice: ${diceLine(candidate)}.`));
      if (candidate.served) {
        review.append(el('div', { 'data-cmi-text': 'verdict', style: { color: COLOURS.good } },
          'This new model is the served model.'));
      } else if (candidate.problem) {
        review.append(el('div', { 'data-cmi-text': 'verdict', style: { color: COLOURS.warn } },
          `It cannot be published: ${candidate.problem.replace(/^Not published: /, '')}`));
      } else {
        review.append(el('div', { 'data-cmi-text': 'verdict', style: { color: COLOURS.text } },
          'Not served yet: it waits for your review.'));
      }
      box.append(review);
    }
    box.append(el('div', { 'data-cmi-text': 'served', style: { color: COLOURS.muted, marginTop: '4px' } },
      `Served now: ${served.source}${served.published_at ? `, published ${when(served.published_at)}` : ''}.`));
    if (box.parentElement) {
      hideBundleParts(box.parentElement); // in the same task as this box's buttons appear
    }
    if (busy) {
      for (const b of box.querySelectorAll('button')) {
        b.disabled = true;
      }
    }
  }

  function announceEnd(previous, next) {
    const task = next.training.started;
    if (!previous || previous.training.state !== 'running' || next.training.state === 'running') {
      return;
    }
    if (watchedTask === null && previous.training.started !== task) {
      return;
    }
    const { candidate, training } = next;
    if (training.state === 'done' && candidate) {
      const figures = diceLine(candidate);
      if (candidate.publishable) {
        notify('success', `Training finished. Validation Dice: ${figures}. The new model is not used until you publish it (Active Learning tab).`, 20000);
      } else if (candidate.served) {
        notify('success', `Training finished and the new model is served. Validation Dice: ${figures}.`, 20000);
      } else {
        notify('warning', `Training finished. Validation Dice: ${figures}. ${candidate.problem || ''}`, 20000);
      }
    } else if (training.state === 'done') {
      notify('success', 'Training finished.', 20000);
    } else {
      notify(training.state === 'failed' ? 'error' : 'warning', training.message || `Training ${training.state}.`, 20000);
    }
    watchedTask = null;
  }

  async function poll() {
    try {
      const answer = await fetch(STATUS_URL, { cache: 'no-store' });
      if (!answer.ok) {
        throw new Error(`HTTP ${answer.status}`);
      }
      const next = await answer.json();
      announceEnd(status, next);
      if (next.training.state === 'running') {
        watchedTask = watchedTask || next.training.started;
      }
      status = next;
      problem = null;
    } catch (error) {
      problem = 'The cardiac_mi server does not answer; the training status shows again when it is back.';
      console.warn('cardiac_mi: training status', error);
    }
    render();
  }

  function schedule() {
    if (stopped) {
      return;
    }
    const wait = status && status.training.state === 'running' ? POLL_RUNNING_MS : POLL_MS;
    pollTimer = setTimeout(async () => {
      await poll();
      schedule();
    }, wait);
  }

  const mountTimer = setInterval(() => {
    const tab = activeLearningTab();
    if (!tab) {
      return;
    }
    if (box.parentElement !== tab) {
      tab.append(box);
    }
    if (status) {
      hideBundleParts(tab); // only once this box has the real figures and buttons to show instead
    }
  }, MOUNT_MS);

  render();
  poll().then(schedule);

  running = () => {
    stopped = true;
    clearInterval(mountTimer);
    clearTimeout(pollTimer);
    box.remove();
    running = null;
  };
  return running;
}

export default watchTraining;
