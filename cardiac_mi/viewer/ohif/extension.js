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
 *   shown (the panel itself waits for a click), gives the label classes their cardiac_mi colours, and
 *   shows the series' final label when it has one (the last saved correction, to continue from).
 */

const EXTENSION_ID = '@cardiac-mi/extension-viewer';
const LABELS_SOURCE = 'cardiac_mi_labels'; // app-config.js: its STOW goes to the server's /viewer/labels
const SEGMENTS_URL = '/viewer/segments';
const PANEL_URL = '/viewer/monailabel/'; // the MONAI Label API as the panel sees it (cardiac_mi/viewer/panel.py)
const SERIES_DESCRIPTION = 'LGE segmentation (OHIF)';
const CONNECT_TIMEOUT_MS = 120000;

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
      const names = new Set(classes.map(c => c.name));
      const used = Object.values(segmentation.segments || {}).filter(s => s && counts.get(s.segmentIndex));
      if (!used.length) {
        throw new SaveProblem('Nothing to save: the segmentation is empty. Run the segmentation in the MONAI Label panel, or draw with the brush, first.');
      }
      const foreign = used.filter(s => !names.has(normalise(s.label)));
      if (foreign.length) {
        const list = foreign.map(s => `"${s.label}"`).join(', ');
        throw new SaveProblem(`Not saved: ${list} is not a label class (${[...names].join(', ')}). Erase it or delete it in the Segmentation panel, then save.`);
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

  /** Colour the label classes as cardiac_mi draws them everywhere else. */
  async function colourSegments(viewportId, segmentationId) {
    let classes;
    try {
      classes = await labelClasses();
    } catch (ignored) {
      return;
    }
    const segmentation = services.segmentationService.getSegmentation(segmentationId);
    if (!segmentation) {
      return;
    }
    for (const segment of Object.values(segmentation.segments || {})) {
      const found = segment && classes.find(c => c.name === normalise(segment.label));
      if (found) {
        services.segmentationService.setSegmentColor(viewportId, segmentationId, segment.segmentIndex, [...found.colour, 255]);
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
    const { segmentationService, viewportGridService, displaySetService } = services;
    const viewport = viewportGridService.getState().viewports.get(viewportId);
    const displaySet = viewport && displaySetService.getDisplaySetByUID(viewport.displaySetInstanceUIDs[0]);
    const volume = segmentationService.getLabelmapVolume(segmentationId);
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
    const classes = await labelClasses();
    const segmentation = segmentationService.getSegmentation(segmentationId);
    const indexOf = new Map();
    for (const segment of Object.values(segmentation.segments || {})) {
      const found = segment && classes.find(c => c.name === normalise(segment.label));
      if (found) {
        indexOf.set(found.label, segment.segmentIndex);
      }
    }
    const mapped = new Uint8Array(voxels.length);
    for (let i = 0; i < voxels.length; i++) {
      mapped[i] = voxels[i] ? indexOf.get(voxels[i]) || 0 : 0;
    }
    volume.voxelManager.setCompleteScalarDataArray(mapped);
    const { cornerstone, cornerstoneTools } = cornerstoneLibraries();
    cornerstone.triggerEvent(cornerstone.eventTarget, cornerstoneTools.Enums.Events.SEGMENTATION_DATA_MODIFIED, { segmentationId });
    const when = info.seg_datetime ? new Date(info.seg_datetime).toLocaleString() : 'earlier';
    const waiting = info.pending_upload ? ' (waiting on the server for the archive)' : '';
    notify(services, 'info', `Showing the final label of this series, saved ${when}${waiting}. Edit it and save, or run the segmentation again.`, 8000, 'Final label');
  }

  /** Click the panel's connect button once the first image is on screen; then colour the classes and
   * show the series' final label. */
  function connectPanel() {
    const { viewportGridService, cornerstoneViewportService, segmentationService } = services;
    const started = Date.now();
    const prepared = new Set();
    const { unsubscribe } = segmentationService.subscribe(
      segmentationService.EVENTS.SEGMENTATION_REPRESENTATION_MODIFIED,
      ({ segmentationId }) => {
        if (!segmentationId || prepared.has(segmentationId)) {
          return;
        }
        prepared.add(segmentationId);
        const viewportId = viewportGridService.getActiveViewportId();
        // MONAI Label's panel sets its own colours 1 s after it made the segmentation
        setTimeout(async () => {
          await colourSegments(viewportId, segmentationId);
          await showFinalLabel(viewportId, segmentationId);
        }, 1500);
      }
    );
    const timer = setInterval(() => {
      if (Date.now() - started > CONNECT_TIMEOUT_MS) {
        clearInterval(timer);
        return;
      }
      const viewportId = viewportGridService.getActiveViewportId();
      const viewport = viewportId && cornerstoneViewportService.getCornerstoneViewport(viewportId);
      const input = document.getElementById('monailabelServerURL');
      if (!viewport || !input || !viewport.getActors || !viewport.getActors().length) {
        return;
      }
      const button = input.closest('tr') && input.closest('tr').querySelector('button');
      if (!button) {
        return;
      }
      clearInterval(timer);
      input.value = window.location.origin + PANEL_URL;
      button.click();
    }, 250);
    return () => {
      clearInterval(timer);
      unsubscribe();
    };
  }

  return {
    definitions: {
      cardiacMiSaveLabel: { commandFn: saveLabel },
      // the Segmentation panel's "Export DICOM SEG" runs storeSegmentation: save the same way
      storeSegmentation: { commandFn: saveLabel },
      cardiacMiConnectPanel: { commandFn: connectPanel },
    },
    defaultContext: 'CARDIAC_MI',
  };
}

export default {
  id: EXTENSION_ID,
  getHangingProtocolModule: () => [{ name: shortAxisProtocol.id, protocol: shortAxisProtocol }],
  getCommandsModule,
};
