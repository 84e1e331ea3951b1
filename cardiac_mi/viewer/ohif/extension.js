/*
 * cardiac_mi OHIF extension, loaded at run time by the "Cardiac MI" mode (mode.js).
 *
 * - Hanging protocol "cardiacMiShortAxis": one viewport with the LGE series in its acquisition plane,
 *   i.e. the acquired short-axis slices as they were acquired (no axial/sagittal/coronal reformat).
 *   The viewport is a volume viewport, because MONAI Label's panel writes its result into a volume
 *   labelmap; oriented 'acquisition', it shows exactly the acquired slices.
 * - Command "cardiacMiSaveLabel" (toolbar Save button; it also replaces OHIF's "storeSegmentation", so
 *   the Segmentation panel's export saves the same way): OHIF writes a DICOM SEG of the segmentation on
 *   screen, which is sent by STOW-RS to the server's /viewer/labels; the server makes it the series'
 *   final label: a coded MANUAL SEG in the archive (cardiac_mi/viewer/labels.py). Every outcome is a
 *   notification in plain words.
 * - Command "cardiacMiConnectPanel": connects MONAI Label's panel to this server once the image is
 *   shown (the panel itself waits for a click), and again whenever it is shown disconnected (switching
 *   side panels unmounts it); puts the label classes in clinical order with their display names and
 *   cardiac_mi colours, whatever drew them; and shows the series' final label when it has one (the last
 *   saved correction, to continue from).
 * - Panel "cardiacMiResults": the result of the series on screen (the model's after Run, the saved
 *   label's after Save), from the server's /viewer/results: whether to trust it (the quality checks, in
 *   words), LV mass and volumes, infarct and MVO, the AHA-17 bullseye and segment table, and Report (PDF
 *   to download; DICOM PDF and SR stored in the study). The same verdict shows as a banner on the image.
 * - Undo/redo of every change of the labelmap (brush, eraser, Run, a shown label): commands
 *   "cardiacMiUndo"/"cardiacMiRedo", Ctrl+Z / Ctrl+Y. Run with unsaved edits asks first.
 * - Command "cardiacMiToggleOutline": filled overlay or outlines only.
 */

import { watchTraining } from './training.js';

const EXTENSION_ID = '@cardiac-mi/extension-viewer';
const LABELS_SOURCE = 'cardiac_mi_labels'; // app-config.js: its STOW goes to the server's /viewer/labels
const SEGMENTS_URL = '/viewer/segments';
const PANEL_URL = '/viewer/monailabel/'; // the MONAI Label API as the panel sees it (cardiac_mi/viewer/panel.py)
const RESULTS_URL = '/viewer/results';
const SERIES_DESCRIPTION = 'LGE segmentation (OHIF)';
const PANEL_CHECK_MS = 500;
const HISTORY_LIMIT = 40; // undo steps kept (one labelmap copy each, about 1 MB for a 10-slice study)
const EDIT_SETTLE_MS = 250; // a change of the labelmap is one undo step once it has been quiet this long
const REACT_ELEMENT = Symbol.for('react.element'); // React 18, the version of the pinned OHIF bundle

const shortAxisProtocol = {
  id: 'cardiacMiShortAxis',
  name: 'Short-axis stack',
  locked: true,
  protocolMatchingRules: [],
  imageLoadStrategy: 'interleaveCenter',
  displaySetSelectors: {
    lge: {
      seriesMatchingRules: [
        { weight: 10, attribute: 'Modality', constraint: { equals: { value: 'MR' } }, required: true },
        { weight: 5, attribute: 'isReconstructable', constraint: { equals: { value: true } }, required: true },
        { weight: 1, attribute: 'numImageFrames', constraint: { greaterThan: { value: 1 } } },
      ],
    },
  },
  stages: [
    {
      name: 'Short-axis',
      viewportStructure: { layoutType: 'grid', properties: { rows: 1, columns: 1 } },
      viewports: [
        {
          viewportOptions: {
            viewportId: 'cardiac-mi-sax',
            toolGroupId: 'default',
            viewportType: 'volume',
            orientation: 'acquisition',
            initialImageOptions: { preset: 'middle' },
          },
          displaySets: [{ id: 'lge' }],
        },
      ],
    },
  ],
};

class SaveProblem extends Error {}

function notify(services, type, message, duration, title) {
  services.uiNotificationService.show({
    title: title || 'Save label',
    message,
    type,
    duration: duration || (type === 'error' ? 15000 : 8000),
  });
}

let classTable = null;
async function labelClasses() {
  if (!classTable) {
    const answer = await fetch(SEGMENTS_URL, { cache: 'no-cache' });
    if (!answer.ok) {
      throw new SaveProblem(`the cardiac_mi server did not list the label classes (HTTP ${answer.status})`);
    }
    classTable = await answer.json();
  }
  return classTable;
}

function normalise(name) {
  return String(name || '').trim().toLowerCase().replace(/[\s-]+/g, '_');
}

/** The label class a segment name stands for (its class name or its display name), or undefined. */
function classOf(classes, name) {
  const key = normalise(name);
  return classes.find(c => c.name === key || normalise(c.display) === key);
}

function escapeHtml(text) {
  return String(text == null ? '' : text).replace(/[&<>"']/g, ch => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]);
}

function sameArray(a, b) {
  if (!a || !b || a.length !== b.length) {
    return false;
  }
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      return false;
    }
  }
  return true;
}

/** The segmentation to save: the given one, else the one shown in the active viewport, else the only one. */
function chooseSegmentation(services, segmentationId) {
  const { segmentationService, viewportGridService } = services;
  if (segmentationId) {
    return segmentationService.getSegmentation(segmentationId);
  }
  const viewportId = viewportGridService.getActiveViewportId();
  const shown = viewportId ? segmentationService.getSegmentationRepresentations(viewportId) : [];
  if (shown && shown.length) {
    return segmentationService.getSegmentation(shown[0].segmentationId);
  }
  const all = segmentationService.getSegmentations() || [];
  return all.length === 1 ? all[0] : null;
}

/** Voxels per segment index, read from the labelmap images (what OHIF's SEG export reads too). */
function countVoxels(cornerstone, segmentation) {
  const labelmap = segmentation.representationData && segmentation.representationData.Labelmap;
  const counts = new Map();
  if (!labelmap || !labelmap.imageIds) {
    return counts;
  }
  for (const imageId of labelmap.imageIds) {
    const image = cornerstone.cache.getImage(imageId);
    if (!image) {
      continue;
    }
    const pixels = image.getPixelData();
    for (let i = 0; i < pixels.length; i++) {
      const value = pixels[i];
      if (value) {
        counts.set(value, (counts.get(value) || 0) + 1);
      }
    }
  }
  return counts;
}

function describeFailure(error) {
  if (!error || !error.request) {
    console.warn('cardiac_mi: the SEG could not be sent', error);
    return `Not saved: the viewer could not send the segmentation (${error && error.message ? error.message : error}).`;
  }
  const status = error.status;
  let detail = '';
  try {
    const body = error.request ? error.request.responseText : '';
    detail = body ? JSON.parse(body).detail || '' : '';
  } catch (ignored) {
    detail = '';
  }
  if (!status) {
    return 'The cardiac_mi server does not answer (stopped or restarting?). Your segmentation is still here: save again when it is back.';
  }
  if (status === 404) {
    return `Not saved: ${detail || 'the image series is no longer in the archive'}.`;
  }
  if (status === 422 || status === 400) {
    return `Not saved: ${detail || 'the server could not read the segmentation'}.`;
  }
  return `Not saved: the server answered HTTP ${status}${detail ? ': ' + detail : ''}. Your segmentation is still here: try again.`;
}

function getCommandsModule({ servicesManager, extensionManager, commandsManager }) {
  const services = servicesManager.services;
  let saving = false;

  function cornerstoneLibraries() {
    const common = extensionManager.getModuleEntry('@ohif/extension-cornerstone.utilityModule.common');
    return common.exports.getCornerstoneLibraries();
  }

  let labelsReady = null;
  /** The data source whose STOW goes to the server's /viewer/labels (initialized on first use). */
  function labelsSource() {
    if (!labelsReady) {
      const [source] = extensionManager.getDataSources(LABELS_SOURCE) || [];
      if (!source) {
        throw new SaveProblem(`Not saved: the viewer configuration has no "${LABELS_SOURCE}" data source.`);
      }
      source.initialize({ params: {}, query: new URLSearchParams() });
      labelsReady = source;
    }
    return labelsReady;
  }

  async function saveLabel({ segmentationId } = {}) {
    if (saving) {
      notify(services, 'warning', 'A save is already running; wait for its answer.');
      return null;
    }
    saving = true;
    try {
      const segmentation = chooseSegmentation(services, segmentationId);
      if (!segmentation) {
        throw new SaveProblem('Nothing to save: run the segmentation in the MONAI Label panel, or draw with the brush, first.');
      }
      const { cornerstone } = cornerstoneLibraries();
      const counts = countVoxels(cornerstone, segmentation);
      const classes = await labelClasses();
      const used = Object.values(segmentation.segments || {}).filter(s => s && counts.get(s.segmentIndex));
      if (!used.length) {
        throw new SaveProblem('Nothing to save: the segmentation is empty. Run the segmentation in the MONAI Label panel, or draw with the brush, first.');
      }
      const foreign = used.filter(s => !classOf(classes, s.label));
      if (foreign.length) {
        const list = foreign.map(s => `"${s.label}"`).join(', ');
        throw new SaveProblem(`Not saved: ${list} is not a label class (${classes.map(c => c.display).join(', ')}). Erase it or delete it in the Segmentation panel, then save.`);
      }
      const generated = commandsManager.runCommand(
        'generateSegmentation',
        { segmentationId: segmentation.segmentationId, options: { SeriesDescription: SERIES_DESCRIPTION } },
        'SEGMENTATION'
      );
      if (!generated || !generated.dataset) {
        throw new SaveProblem('Not saved: OHIF could not build the DICOM SEG of this segmentation.');
      }
      const labels = labelsSource();
      const request = new XMLHttpRequest();
      try {
        await labels.store.dicom(generated.dataset, request);
      } catch (error) {
        throw new SaveProblem(describeFailure(error));
      }
      let answer = {};
      try {
        answer = JSON.parse(request.responseText || '{}');
      } catch (ignored) {
        answer = {};
      }
      const saved = used.map(s => s.label).join(', ');
      history.saved();
      if (answer.results) {
        results.show(answer.results);
      } else {
        results.refresh();
      }
      if (answer.stored === false) {
        notify(services, 'warning', `Saved on the cardiac_mi server (${saved}), but the archive is unreachable: the label is kept and sent as soon as the archive is back.`, 15000);
      } else {
        notify(services, 'success', `Saved as the final label of this series (${saved}), stored in the archive as a DICOM SEG.`);
      }
      return answer;
    } catch (error) {
      const message = error instanceof SaveProblem ? error.message : `Not saved: ${error && error.message ? error.message : error}`;
      notify(services, 'error', message);
      if (!(error instanceof SaveProblem)) {
        console.warn('cardiac_mi save failed', error);
      }
      return null;
    } finally {
      saving = false;
    }
  }

  function labelmapVolume(segmentationId) {
    return services.segmentationService.getLabelmapVolume(segmentationId);
  }

  function modified(segmentationId) {
    const { cornerstone, cornerstoneTools } = cornerstoneLibraries();
    cornerstone.triggerEvent(cornerstone.eventTarget, cornerstoneTools.Enums.Events.SEGMENTATION_DATA_MODIFIED, { segmentationId });
  }

  /** The series on screen: its display set, or null. */
  function shownSeries() {
    const { viewportGridService, displaySetService } = services;
    const state = viewportGridService.getState();
    const viewport = state.viewports.get(state.activeViewportId) || [...state.viewports.values()][0];
    const uid = viewport && viewport.displaySetInstanceUIDs && viewport.displaySetInstanceUIDs[0];
    return uid ? displaySetService.getDisplaySetByUID(uid) : null;
  }

  /**
   * The label classes in clinical order with their display names and colours: segment k is class k
   * (1 LV blood pool, 2 Myocardium, 3 Infarct, 4 MVO). MONAI Label's panel makes its segments in
   * alphabetical order with its own colours; this renumbers them (and their voxels) and recolours them.
   * Idempotent: nothing changes when they are already so.
   */
  async function canonicalSegments(viewportId, segmentationId) {
    let classes;
    try {
      classes = await labelClasses();
    } catch (ignored) {
      return;
    }
    const { segmentationService } = services;
    const segmentation = segmentationService.getSegmentation(segmentationId);
    if (!segmentation) {
      return;
    }
    const segments = Object.values(segmentation.segments || {}).filter(Boolean);
    const remap = new Uint8Array(256);
    let renumber = false;
    for (let i = 0; i < 256; i++) {
      remap[i] = i;
    }
    for (const segment of segments) {
      const found = classOf(classes, segment.label);
      if (found && found.label !== segment.segmentIndex) {
        remap[segment.segmentIndex] = found.label;
        renumber = true;
      }
    }
    const known = segments.every(s => classOf(classes, s.label));
    if (renumber && known) {
      const volume = labelmapVolume(segmentationId);
      if (volume) {
        const data = volume.voxelManager.getCompleteScalarDataArray();
        if (data.some(v => v !== 0)) {
          const moved = new Uint8Array(data.length);
          for (let i = 0; i < data.length; i++) {
            moved[i] = remap[data[i]];
          }
          volume.voxelManager.setCompleteScalarDataArray(moved);
          modified(segmentationId);
        }
      }
    }
    // MONAI Label's panel maps its result to segments by the labels of the segmentation's creation config
    const config = segmentation.config && segmentation.config.segments;
    for (const c of classes) {
      const segment = segmentation.segments[c.label];
      if (known && (!segment || segment.label !== c.display)) {
        segmentationService.setSegmentLabel(segmentationId, c.label, c.display);
      }
      const colour = [...c.colour, 255];
      if (known && config) {
        const entry = Object.values(config).find(e => e && e.segmentIndex === c.label);
        if (entry) {
          entry.label = c.display;
          entry.color = colour;
        }
      }
      const current = viewportId ? segmentationService.getSegmentColor(viewportId, segmentationId, c.label) : null;
      if (viewportId && (!current || !sameArray([...current], colour))) {
        segmentationService.setSegmentColor(viewportId, segmentationId, c.label, colour);
      }
    }
  }

  /** The class values of an NRRD of the panel's kind (raw uint8, written by cardiac_mi/viewer/panel.py). */
  function nrrdVoxels(bytes) {
    for (let i = 0; i + 1 < bytes.length; i++) {
      if (bytes[i] === 10 && bytes[i + 1] === 10) {
        return bytes.subarray(i + 2);
      }
    }
    throw new Error('not an NRRD file');
  }

  /** Show the series' final label (its newest MANUAL SEG), if it has one, in an empty segmentation. */
  async function showFinalLabel(viewportId, segmentationId) {
    const displaySet = shownSeries();
    const volume = labelmapVolume(segmentationId);
    if (!displaySet || !volume) {
      return;
    }
    let answer;
    try {
      answer = await fetch(`${PANEL_URL}label?image=${encodeURIComponent(displaySet.SeriesInstanceUID)}`, { cache: 'no-store' });
    } catch (error) {
      return; // the server is away: the panel says so when it is used
    }
    if (answer.status === 204) {
      return;
    }
    if (!answer.ok) {
      notify(services, 'warning', `The saved label of this series could not be shown (HTTP ${answer.status}).`, 8000, 'Final label');
      return;
    }
    const info = JSON.parse(answer.headers.get('X-Cardiac-Mi-Label') || '{}');
    const voxels = nrrdVoxels(new Uint8Array(await answer.arrayBuffer()));
    const current = volume.voxelManager.getCompleteScalarDataArray();
    if (current.length !== voxels.length) {
      notify(services, 'warning', 'The saved label does not fit this series; it is not shown.', 8000, 'Final label');
      return;
    }
    if (current.some(v => v !== 0)) {
      return; // something was drawn or computed meanwhile: leave it
    }
    await canonicalSegments(viewportId, segmentationId); // segment k is class k from here on
    volume.voxelManager.setCompleteScalarDataArray(new Uint8Array(voxels));
    history.shown();
    modified(segmentationId);
    const when = info.seg_datetime ? new Date(info.seg_datetime).toLocaleString() : 'earlier';
    // a SEG that is still in the server's outbox; once in the archive the label says so no more
    const waiting = info.pending_upload ? ' (kept on the server until the archive takes it)' : '';
    notify(services, 'info', `Showing the final label of this series, saved ${when}${waiting}. Edit it and save, or run the segmentation again.`, 8000, 'Final label');
  }

  // ------------------------------------------------------------------------------------ undo / redo

  /**
   * Every change of the labelmap, whoever made it, becomes one step once it has been quiet for
   * EDIT_SETTLE_MS (a brush stroke fires many events). "baseline" is the labelmap as last computed by
   * the model, shown from the archive or saved: edits are the difference from it.
   */
  const history = {
    segmentationId: null,
    committed: null,
    baseline: null,
    undo: [],
    redo: [],
    timer: null,
    awaitingRun: false,

    data() {
      const volume = this.segmentationId && labelmapVolume(this.segmentationId);
      return volume ? volume.voxelManager.getCompleteScalarDataArray() : null;
    },
    attach(segmentationId) {
      if (this.segmentationId === segmentationId) {
        return;
      }
      this.segmentationId = segmentationId;
      const data = this.data();
      this.committed = data ? new Uint8Array(data) : null;
      this.baseline = this.committed;
      this.undo = [];
      this.redo = [];
      if (this.awaitingRun) {
        // the panel made this segmentation from the Run's answer, whose result the server holds by now;
        // the labelmap may never change after this (it came filled, or the model found nothing)
        results.refresh();
        if (this.committed && this.committed.some(v => v)) {
          this.awaitingRun = false;
        }
      }
    },
    pressed: false, // a mouse button is down on the image: a brush stroke is one step, however slow
    changed(segmentationId) {
      if (segmentationId !== this.segmentationId) {
        return;
      }
      clearTimeout(this.timer);
      if (!this.pressed) {
        this.timer = setTimeout(() => this.commit(), EDIT_SETTLE_MS);
      }
    },
    pointer(event) {
      if (event.type === 'pointerdown' && results.picking && results.picked(event)) {
        event.preventDefault();
        event.stopPropagation();
        return;
      }
      if (event.type === 'pointerdown') {
        this.pressed = Boolean(event.target && event.target.closest && event.target.closest('[data-cy="viewport-pane"]'));
      } else if (this.pressed) {
        this.pressed = false;
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.commit(), EDIT_SETTLE_MS);
      }
    },
    commit() {
      clearTimeout(this.timer);
      this.timer = null;
      const data = this.data();
      if (!data || sameArray(data, this.committed)) {
        return false;
      }
      if (this.committed) {
        this.undo.push(this.committed);
        if (this.undo.length > HISTORY_LIMIT) {
          this.undo.shift();
        }
      }
      this.redo = [];
      this.committed = new Uint8Array(data);
      if (this.awaitingRun) {
        this.awaitingRun = false;
        this.baseline = this.committed;
        results.refresh();
      }
      return true;
    },
    restore(from, to, what) {
      this.commit();
      if (!from.length) {
        notify(services, 'info', `Nothing to ${what}.`, 3000, 'Edit');
        return false;
      }
      to.push(this.committed);
      this.committed = from.pop();
      labelmapVolume(this.segmentationId).voxelManager.setCompleteScalarDataArray(new Uint8Array(this.committed));
      modified(this.segmentationId);
      return true;
    },
    shown() {
      this.commit();
      this.baseline = this.committed;
    },
    saved() {
      this.commit();
      this.baseline = this.committed;
    },
    edited() {
      this.commit();
      return Boolean(this.committed && this.baseline && !sameArray(this.committed, this.baseline)) ||
        Boolean(this.committed && !this.baseline && this.committed.some(v => v !== 0));
    },
  };

  function undo() {
    return history.segmentationId ? history.restore(history.undo, history.redo, 'undo') : false;
  }

  function redo() {
    return history.segmentationId ? history.restore(history.redo, history.undo, 'redo') : false;
  }

  /** Run (MONAI Label's panel) with unsaved edits asks first; then the next change is the model's. */
  function guardRun(event) {
    const button = event.target && event.target.closest && event.target.closest('button.actionButton');
    if (!button || !String(button.title || '').startsWith('Run')) {
      return;
    }
    if (history.edited() && !window.confirm(
      'Run the model again?\n\nIts result replaces your unsaved edits on every slice. ' +
      'Cancel keeps them (save them first); after Run, Undo (Ctrl+Z) brings them back.')) {
      event.preventDefault();
      event.stopPropagation();
      return;
    }
    history.awaitingRun = true;
  }

  /** Capture: the slice as it is on screen (image, overlay and window/level), as a PNG download.
   * (OHIF's own Capture renders the volume again in its default orientation: an oblique reformat.) */
  function capture() {
    const { viewportGridService, cornerstoneViewportService } = services;
    const viewportId = viewportGridService.getActiveViewportId();
    const viewport = viewportId && cornerstoneViewportService.getCornerstoneViewport(viewportId);
    const canvas = viewport && (viewport.canvas || viewport.element.querySelector('canvas'));
    if (!canvas) {
      notify(services, 'warning', 'Nothing to capture: no image on screen.', 4000, 'Capture');
      return;
    }
    const displaySet = shownSeries();
    const index = typeof viewport.getSliceIndex === 'function' ? viewport.getSliceIndex() : viewport.getCurrentImageIdIndex();
    const patient = displaySet && displaySet.instances && displaySet.instances[0] ? displaySet.instances[0].PatientID : '';
    const name = `cardiac-mi-${String(patient || 'study').replace(/[^A-Za-z0-9_-]+/g, '_')}-slice-${index + 1}.png`;
    canvas.toBlob(blob => {
      const link = document.createElement('a');
      link.href = URL.createObjectURL(blob);
      link.download = name;
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    }, 'image/png');
  }

  /** A saved label's thumbnail (a DICOM SEG series) double-clicked or dragged onto the image: OHIF cannot
   * show a SEG in this viewport and answers with a red error. The newest one is on the image already. */
  function guardSegThumbnail(event) {
    const thumbnail = event.target && event.target.closest && event.target.closest('[id^="thumbnail-"]');
    const displaySet = thumbnail && services.displaySetService.getDisplaySetByUID(thumbnail.id.slice('thumbnail-'.length));
    if (!displaySet || displaySet.Modality !== 'SEG') {
      return;
    }
    event.preventDefault();
    event.stopPropagation();
    if (event.type === 'dblclick') {
      notify(services, 'info', 'This is a saved label of the series (a DICOM SEG in the archive). The newest one is the final label, and it is shown on the images when the study opens; older ones stay in the archive as the record of earlier saves.', 9000, 'Saved label');
    }
  }

  let outlines = false;
  function toggleOutline() {
    outlines = !outlines;
    services.segmentationService.setStyle({ type: 'Labelmap' }, { renderFill: !outlines, renderOutline: true, outlineWidth: outlines ? 2 : 1 });
    notify(services, 'info', outlines ? 'Overlay as outlines: the enhancement under it shows.' : 'Overlay filled.', 2500, 'Overlay');
  }

  // ---------------------------------------------------------------------------------------- results

  const VERDICT = {
    good: ['#0f5132', '#d1e7dd', 'No plausibility problem found'],
    doubtful: ['#842029', '#f8d7da', 'Doubtful result: check it before use'],
    none: ['#41464b', '#e2e3e5', 'No result yet: run the segmentation, or save a label'],
  };

  function number(value, unit) {
    return value == null ? '–' : `${value}${unit ? ' ' + unit : ''}`;
  }

  function list(values) {
    return values && values.length ? values.join(', ') : 'none';
  }

  /** What the results panel and the banner on the image show; one of each at a time. */
  const results = {
    node: null,
    banner: null,
    view: null,
    series: null,
    asking: 0,

    attach(node) {
      this.node = node;
      if (node) {
        this.render();
      }
    },
    async refresh() {
      const displaySet = shownSeries();
      if (!displaySet) {
        return;
      }
      const ask = ++this.asking;
      let answer;
      try {
        answer = await fetch(`${RESULTS_URL}?image=${encodeURIComponent(displaySet.SeriesInstanceUID)}`, { cache: 'no-store' });
      } catch (error) {
        return;
      }
      if (ask !== this.asking) {
        return; // a newer ask is on its way
      }
      this.series = displaySet.SeriesInstanceUID;
      if (answer.status === 204) {
        this.show(null);
      } else if (answer.ok) {
        this.show(await answer.json());
      }
    },
    show(view) {
      this.view = view;
      this.render();
    },
    verdict() {
      if (!this.view) {
        return 'none';
      }
      return this.view.quality && this.view.quality.doubtful ? 'doubtful' : 'good';
    },
    reasons() {
      const findings = (this.view && this.view.quality && this.view.quality.findings) || [];
      return findings.map(f => f.message);
    },
    renderBanner() {
      const pane = document.querySelector('[data-cy="viewport-pane"]');
      const host = pane && pane.parentElement;
      if (!host) {
        return;
      }
      if (!this.banner || !host.contains(this.banner)) {
        this.banner = document.createElement('div');
        this.banner.id = 'cardiac-mi-quality';
        this.banner.setAttribute('role', 'status');
        Object.assign(this.banner.style, {
          position: 'absolute', top: '6px', left: '50%', transform: 'translateX(-50%)', zIndex: 10,
          maxWidth: '70%', padding: '4px 10px', borderRadius: '4px', fontSize: '13px', lineHeight: '1.35',
          pointerEvents: 'none', boxShadow: '0 1px 4px rgba(0,0,0,0.5)',
        });
        host.style.position = host.style.position || 'relative';
        host.appendChild(this.banner);
      }
      const verdict = this.verdict();
      this.banner.dataset.verdict = verdict;
      if (verdict === 'none') {
        this.banner.style.display = 'none';
        return;
      }
      const [ink, paper, title] = VERDICT[verdict];
      const source = this.view.source === 'model' ? 'model result' : 'saved label';
      const reasons = this.reasons();
      this.banner.style.display = 'block';
      this.banner.style.color = ink;
      this.banner.style.background = paper;
      this.banner.style.border = `2px solid ${ink}`;
      this.banner.innerHTML = `<b>${escapeHtml(title)}</b> (${source})` +
        (reasons.length ? `<ul style="margin:2px 0 0 16px;list-style:disc">${reasons.map(r => `<li>${escapeHtml(r)}</li>`).join('')}</ul>` : '');
    },
    /** "basal" / "mid" / "apical" beside the slice number, from the result's AHA levels. */
    renderCue() {
      const { viewportGridService, cornerstoneViewportService } = services;
      const viewportId = viewportGridService.getActiveViewportId();
      const viewport = viewportId && cornerstoneViewportService.getCornerstoneViewport(viewportId);
      const pane = document.querySelector('[data-cy="viewport-pane"]');
      const host = pane && pane.parentElement;
      if (!viewport || !host) {
        return;
      }
      if (!this.cue || !host.contains(this.cue)) {
        this.cue = document.createElement('div');
        this.cue.id = 'cardiac-mi-slice-level';
        Object.assign(this.cue.style, {
          position: 'absolute', right: '12px', bottom: '28px', zIndex: 10, fontSize: '13px', color: '#93c5fd',
          pointerEvents: 'none', textShadow: '0 0 3px black',
        });
        host.appendChild(this.cue);
      }
      if (viewport.element && viewport.element !== this.watched) {
        this.watched = viewport.element;
        const { cornerstone } = cornerstoneLibraries();
        const again = () => this.renderCue();
        for (const name of [cornerstone.Enums.Events.CAMERA_MODIFIED, cornerstone.Enums.Events.VOLUME_NEW_IMAGE]) {
          if (name) {
            viewport.element.addEventListener(name, again);
          }
        }
      }
      const levels = (this.view && this.view.slice_levels) || null;
      const index = typeof viewport.getSliceIndex === 'function' ? viewport.getSliceIndex() : viewport.getCurrentImageIdIndex();
      const count = typeof viewport.getNumberOfSlices === 'function' ? viewport.getNumberOfSlices() : null;
      const level = levels && levels.length === count ? levels[index] : undefined;
      const names = { basal: 'basal slice (towards the base)', mid: 'mid-ventricular slice', apical: 'apical slice (towards the apex)' };
      this.cue.dataset.level = level || '';
      this.cue.textContent = level ? names[level] || level : levels && level === null ? 'no LV myocardium on this slice' : '';
    },
    render() {
      this.renderBanner();
      this.renderCue();
      if (!this.node) {
        return;
      }
      const verdict = this.verdict();
      const [ink, paper, title] = VERDICT[verdict];
      const view = this.view;
      const parts = [];
      parts.push(`<div data-cy="cardiac-mi-verdict" data-verdict="${verdict}" style="color:${ink};background:${paper};border:2px solid ${ink};border-radius:4px;padding:6px 8px;margin-bottom:8px">` +
        `<b>${escapeHtml(title)}</b>` +
        (this.reasons().length ? `<ul style="margin:4px 0 0 16px;list-style:disc">${this.reasons().map(r => `<li>${escapeHtml(r)}</li>`).join('')}</ul>` : '') +
        '</div>');
      if (view) {
        const when = view.created ? new Date(view.created).toLocaleTimeString() : '';
        const source = view.source === 'model' ? `Model result (${escapeHtml(view.model)}), ${when}` : `Saved label, measured ${when}`;
        const edited = history.edited() ? ' <span style="color:#ffc107">· the overlay has unsaved edits: Save to measure them</span>' : '';
        parts.push(`<div style="font-size:12px;color:#9ca3af;margin-bottom:6px">${source}${edited}</div>`);
      }
      if (view && view.figures) {
        const f = view.figures;
        const rows = [
          ['LV mass', number(f.lv_mass_g, 'g'), 'lv_mass_g'],
          ['LV myocardium', number(f.myocardium_volume_ml, 'ml'), 'myocardium_volume_ml'],
          ['LV blood pool', number(f.cavity_volume_ml, 'ml'), 'cavity_volume_ml'],
          ['Infarct', `${number(f.infarct_volume_ml, 'ml')}, ${number(f.infarct_percent_lv, '% of LV')}`, 'infarct'],
          ['MVO', `${number(f.mvo_volume_ml, 'ml')}, ${number(f.mvo_percent_lv, '% of LV')}`, 'mvo'],
          ['Study', escapeHtml(f.classification), 'classification'],
          ...(view.uncertainty && view.uncertainty.mutual_information != null
            ? [['Model uncertainty', `${view.uncertainty.mutual_information.toFixed(3)} (doubtful above ${view.uncertainty.limit})`, 'uncertainty']]
            : []),
          ['Infarcted segments', list(f.infarcted_segments), 'infarcted_segments'],
          ['Non-viable segments', `${list(f.nonviable_segments)} (transmurality > ${f.viability_threshold_percent} %)`, 'nonviable_segments'],
        ];
        parts.push('<table data-cy="cardiac-mi-figures" style="width:100%;font-size:13px;border-collapse:collapse">' +
          rows.map(([name, value, key]) => `<tr data-key="${key}"><td style="padding:2px 4px;color:#9ca3af">${name}</td><td style="padding:2px 4px;text-align:right">${value}</td></tr>`).join('') +
          '</table>');
        const stamp = encodeURIComponent(view.created || '');
        parts.push(`<img data-cy="cardiac-mi-bullseye" alt="AHA-17 bullseyes: infarct extent and transmurality" style="width:100%;background:white;margin:8px 0;border-radius:4px" ` +
          `src="${RESULTS_URL}/bullseye.png?image=${encodeURIComponent(view.image)}&t=${stamp}">`);
        const viability = v => (v === true ? 'viable' : v === false ? '<b style="color:#f87171">non-viable</b>' : '–');
        parts.push('<table data-cy="cardiac-mi-segments" style="width:100%;font-size:12px;border-collapse:collapse">' +
          '<tr style="color:#9ca3af"><th style="text-align:left">AHA segment</th><th>infarct %</th><th>transmural %</th><th>viability</th></tr>' +
          view.segments.map(row => `<tr data-segment="${row.segment}"><td>${row.segment} ${escapeHtml(row.name)}</td>` +
            `<td style="text-align:right">${number(row.infarct_percent)}</td><td style="text-align:right">${number(row.transmurality_mean_percent)}</td>` +
            `<td style="text-align:center">${row.present ? viability(row.viable) : 'not covered'}</td></tr>`).join('') +
          '</table>');
        const rv = f.rv_insertion_deg;
        parts.push('<div style="margin-top:10px;font-size:13px">' +
          `<label>RV insertion <input data-cy="cardiac-mi-rv" type="number" min="-360" max="360" step="1" value="${rv}" style="width:5em;color:black"> degrees</label>` +
          '<button data-cy="cardiac-mi-rv-pick" class="actionButton" style="margin-left:6px;padding:1px 6px">Pick on image</button>' +
          '<div style="font-size:11px;color:#9ca3af">Anterior RV insertion angle of the AHA segments (default: 120°, from the patient axes). ' +
          'Pick on image, then click the anterior RV insertion point on a slice with the LV.</div>' +
          '<button data-cy="cardiac-mi-report" class="actionButton" style="margin-top:6px;padding:4px 10px">Report (PDF, and DICOM PDF + SR to the archive)</button>' +
          '</div>');
      } else if (view && view.error) {
        parts.push(`<div style="font-size:13px">Nothing measured: ${escapeHtml(view.error)}</div>`);
      }
      this.node.innerHTML = `<div style="padding:8px;color:#e5e7eb;font-size:13px">${parts.join('')}</div>`;
      const button = this.node.querySelector('[data-cy="cardiac-mi-report"]');
      if (button) {
        button.addEventListener('click', () => this.report(button));
      }
      const pick = this.node.querySelector('[data-cy="cardiac-mi-rv-pick"]');
      if (pick) {
        pick.addEventListener('click', () => {
          this.picking = true;
          notify(services, 'info', 'Click the anterior RV insertion point on the image (a slice with the LV).', 6000, 'RV insertion');
        });
      }
    },
    /**
     * The angle of a point on the image as the AHA segments measure it (lgemri.aha.myocardium_angles):
     * about the slice's LV centre (mean of its LV voxels), counter-clockwise from image right, anterior
     * up, atan2(-(j - cj) * sj, (i - ci) * si); null off the LV's slices.
     */
    angleAt(canvasPoint) {
      const { viewportGridService, cornerstoneViewportService } = services;
      const viewport = cornerstoneViewportService.getCornerstoneViewport(viewportGridService.getActiveViewportId());
      const volume = history.segmentationId && labelmapVolume(history.segmentationId);
      if (!viewport || !volume || !volume.imageData) {
        return null;
      }
      const index = volume.imageData.worldToIndex(viewport.canvasToWorld(canvasPoint)).map(Math.round);
      const [columns, rows, slices] = volume.dimensions;
      const k = index[2];
      if (k < 0 || k >= slices) {
        return null;
      }
      const data = volume.voxelManager.getCompleteScalarDataArray();
      let n = 0;
      let si = 0;
      let sj = 0;
      for (let j = 0; j < rows; j++) {
        for (let i = 0; i < columns; i++) {
          if (data[k * rows * columns + j * columns + i]) {
            n++;
            si += i;
            sj += j;
          }
        }
      }
      if (!n) {
        return null;
      }
      const [di, dj] = volume.spacing;
      const degrees = (Math.atan2(-(index[1] - sj / n) * dj, (index[0] - si / n) * di) * 180) / Math.PI;
      return Math.round(degrees < 0 ? degrees + 360 : degrees);
    },
    picked(event) {
      if (!this.picking) {
        return false;
      }
      const canvas = event.target && event.target.closest && event.target.closest('[data-cy="viewport-pane"]') &&
        document.querySelector('[data-cy="viewport-pane"] canvas');
      if (!canvas) {
        return false;
      }
      this.picking = false;
      const box = canvas.getBoundingClientRect();
      const angle = this.angleAt([event.clientX - box.left, event.clientY - box.top]);
      const input = this.node && this.node.querySelector('[data-cy="cardiac-mi-rv"]');
      if (angle === null || !input) {
        notify(services, 'warning', 'No LV on this slice: pick the RV insertion point on a slice with the LV.', 6000, 'RV insertion');
        return true;
      }
      input.value = String(angle);
      notify(services, 'info', `RV insertion at ${angle}°: the report uses it.`, 4000, 'RV insertion');
      return true;
    },
    async report(button) {
      const view = this.view;
      if (!view) {
        return;
      }
      if (history.edited() || view.source !== 'final label') {
        notify(services, 'warning', 'The report is made from the saved label. Save the segmentation first, then make the report.', 8000, 'Report');
        return;
      }
      const input = this.node.querySelector('[data-cy="cardiac-mi-rv"]');
      const angle = input && input.value !== '' ? `&rv_insertion_deg=${encodeURIComponent(input.value)}` : '';
      button.disabled = true;
      try {
        const answer = await fetch(`${RESULTS_URL}/report?image=${encodeURIComponent(view.image)}${angle}`, { method: 'POST' });
        if (!answer.ok) {
          let detail = '';
          try {
            detail = (await answer.json()).detail || '';
          } catch (ignored) {
            detail = '';
          }
          notify(services, 'error', `No report: ${detail || 'the server answered HTTP ' + answer.status}.`, 12000, 'Report');
          return;
        }
        const outcome = JSON.parse(answer.headers.get('X-Cardiac-Mi-Report') || '{}');
        const link = document.createElement('a');
        link.href = URL.createObjectURL(await answer.blob());
        link.download = 'cardiac-mi-report.pdf';
        document.body.appendChild(link);
        link.click();
        link.remove();
        setTimeout(() => URL.revokeObjectURL(link.href), 60000);
        if (outcome.stored) {
          notify(services, 'success', 'Report made from the saved label: the PDF is downloaded, and its DICOM PDF and SR are stored in the study in the archive.', 10000, 'Report');
        } else {
          notify(services, 'warning', `The PDF is downloaded, but the report was not stored in the archive: ${outcome.reason || 'no reason given'}.`, 15000, 'Report');
        }
      } catch (error) {
        notify(services, 'error', 'No report: the cardiac_mi server does not answer.', 12000, 'Report');
      } finally {
        button.disabled = false;
      }
    },
  };

  /** Keep MONAI Label's panel connected (it connects only on a click, and loses its connection when
   * another side panel is shown); put the classes in order and colour them whenever the segmentation
   * changes; show the series' final label and its results when the study opens. */
  function connectPanel() {
    const { viewportGridService, cornerstoneViewportService, segmentationService } = services;
    const prepared = new Set();
    let connectedInput = null;
    const subscriptions = [
      segmentationService.subscribe(segmentationService.EVENTS.SEGMENTATION_REPRESENTATION_MODIFIED, ({ segmentationId }) => {
        if (!segmentationId) {
          return;
        }
        const viewportId = viewportGridService.getActiveViewportId();
        const first = !prepared.has(segmentationId);
        prepared.add(segmentationId);
        // MONAI Label's panel sets its own colours 1 s after it made the segmentation
        setTimeout(async () => {
          await canonicalSegments(viewportId, segmentationId);
          history.attach(segmentationId);
          if (first) {
            await showFinalLabel(viewportId, segmentationId);
          }
        }, 1500);
      }),
      segmentationService.subscribe(segmentationService.EVENTS.SEGMENTATION_DATA_MODIFIED, ({ segmentationId }) => {
        history.changed(segmentationId);
      }),
    ];
    const timer = setInterval(() => {
      const viewportId = viewportGridService.getActiveViewportId();
      const viewport = viewportId && cornerstoneViewportService.getCornerstoneViewport(viewportId);
      if (viewport && viewport.getActors && viewport.getActors().length) {
        if (results.series === null) {
          results.series = '';
          results.refresh();
        }
        results.renderBanner();
      }
      const input = document.getElementById('monailabelServerURL');
      if (!viewport || !input || !viewport.getActors || !viewport.getActors().length) {
        return;
      }
      const panel = input.closest('table') && input.closest('table').parentElement;
      const connected = document.querySelector('.modelSelector select');
      if (input === connectedInput && connected) {
        return;
      }
      if (input === connectedInput && !connected && panel && panel.isConnected) {
        return; // clicked already; its answer is on its way
      }
      const button = input.closest('tr') && input.closest('tr').querySelector('button');
      if (!button) {
        return;
      }
      connectedInput = input;
      input.value = window.location.origin + PANEL_URL;
      button.click();
      for (const segmentationId of prepared) {
        setTimeout(() => canonicalSegments(viewportId, segmentationId), 1500);
      }
    }, PANEL_CHECK_MS);
    const pointer = event => history.pointer(event);
    const stopTraining = watchTraining({ servicesManager, extensionManager, commandsManager });
    window.addEventListener('click', guardRun, true);
    for (const type of ['pointerdown', 'pointerup', 'pointercancel']) {
      window.addEventListener(type, pointer, true);
    }
    for (const type of ['dblclick', 'dragstart']) {
      window.addEventListener(type, guardSegThumbnail, true);
    }
    return () => {
      stopTraining();
      clearInterval(timer);
      window.removeEventListener('click', guardRun, true);
      for (const type of ['pointerdown', 'pointerup', 'pointercancel']) {
        window.removeEventListener(type, pointer, true);
      }
      for (const type of ['dblclick', 'dragstart']) {
        window.removeEventListener(type, guardSegThumbnail, true);
      }
      subscriptions.forEach(s => s.unsubscribe());
      if (results.banner) {
        results.banner.remove();
      }
      results.banner = null;
      if (results.cue) {
        results.cue.remove();
      }
      results.cue = null;
      results.watched = null;
      results.series = null;
      results.view = null;
      history.segmentationId = null;
    };
  }

  return {
    definitions: {
      cardiacMiSaveLabel: { commandFn: saveLabel },
      // the Segmentation panel's "Export DICOM SEG" runs storeSegmentation: save the same way
      storeSegmentation: { commandFn: saveLabel },
      cardiacMiConnectPanel: { commandFn: connectPanel },
      cardiacMiUndo: { commandFn: undo },
      cardiacMiRedo: { commandFn: redo },
      cardiacMiToggleOutline: { commandFn: toggleOutline },
      cardiacMiCapture: { commandFn: capture },
      cardiacMiAttachResults: { commandFn: ({ node }) => results.attach(node) },
    },
    defaultContext: 'CARDIAC_MI',
  };
}

/**
 * The results panel: a host element whose content the extension draws itself (commands.results). This
 * extension is a plain ES module loaded at run time, without the bundle's React, so the element is written
 * as React 18 represents one; React mounts it and hands its DOM node to the ref.
 */
function getPanelModule({ commandsManager }) {
  const attach = node => commandsManager.runCommand('cardiacMiAttachResults', { node }, 'CARDIAC_MI');
  const ResultsPanel = () => ({
    $$typeof: REACT_ELEMENT,
    type: 'div',
    key: null,
    ref: attach,
    props: { 'data-cy': 'cardiac-mi-results', style: { overflowY: 'auto', height: '100%' } },
    _owner: null,
    _store: {},
  });
  return [{ name: 'cardiacMiResults', iconName: 'tab-linear', iconLabel: 'Results', label: 'Results', component: ResultsPanel }];
}

export default {
  id: EXTENSION_ID,
  getHangingProtocolModule: () => [{ name: shortAxisProtocol.id, protocol: shortAxisProtocol }],
  getCommandsModule,
  getPanelModule,
};
