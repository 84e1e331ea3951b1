/*
 * OHIF configuration of the cardiac_mi viewer, served at /ohif/app-config.js by `cardiac-mi serve`
 * (cardiac_mi/viewer/server.py) in place of the one bundled with MONAI Label.
 *
 * - Every DICOMweb request goes to this server's proxy (/proxy/dicom/...), which adds the archive's
 *   address and credentials: QIDO, WADO and STOW (uploads, and the DICOM SEG of a saved correction).
 * - The "Cardiac MI" mode (cardiac-mi/mode.js) opens an LGE study on its acquired short-axis stack with
 *   the MONAI Label panel connected to this server, the brush tools and a Save button; the extension
 *   (cardiac-mi/extension.js) holds the save command. Both are loaded at run time, no rebuild of OHIF.
 * - The panel of MONAI Label's OHIF plugin reads its server URL from the MONAILABEL_SERVER_URL cookie
 *   (default: port 8000 of the page's host); it is set here to the server that serves this page.
 */
(function pointMonaiLabelPanelHere() {
  const here = window.location.origin + '/viewer/monailabel/';
  document.cookie = 'MONAILABEL_SERVER_URL=' + escape(here) + '; path=/; SameSite=Strict';
})();

const archive = {
  qidoRoot: '/proxy/dicom/qido',
  wadoRoot: '/proxy/dicom/wado',
  wadoUriRoot: '/proxy/dicom/wado',
  qidoSupportsIncludeField: true,
  supportsReject: false,
  imageRendering: 'wadors',
  thumbnailRendering: 'wadors',
  enableStudyLazyLoad: false,
  supportsFuzzyMatching: true,
  supportsWildcard: true,
  omitQuotationForMultipartRequest: true,
  bulkDataURI: { enabled: true },
};

// Modes of the bundle that a cardiac LGE study has no use for (PET/CT, slide microscopy, preclinical 4D and
// OHIF's test modes): OHIF keeps the first mode of each id and lists only modes with a name, so a nameless
// mode of the same id, listed first, hides each from the study list.
const hiddenModes = ['@ohif/mode-tmtv', '@ohif/mode-microscopy', '@ohif/mode-preclinical-4d', '@ohif/mode-test',
  '@ohif/mode-basic-dev-mode'].map(id => ({ id, routes: [], extensions: {}, isValidMode: () => ({ valid: false }) }));

window.config = {
  routerBasename: '/ohif/',
  showStudyList: true,
  // Our mode (which loads our extension) comes first and takes the id of MONAI Label's mode.
  extensions: [],
  modes: ['/ohif/cardiac-mi/mode.js', ...hiddenModes],
  groupEnabledModesFirst: true,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  useSharedArrayBuffer: 'FALSE',
  maxNumberOfWebWorkers: 2,
  defaultDataSourceName: 'dicomweb',
  dataSources: [
    {
      // the archive, through the server's proxy: study list, images, uploads from the study list
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'dicomweb',
      configuration: {
        ...archive,
        friendlyName: 'cardiac_mi archive',
        name: 'cardiac_mi',
        // OHIF 3.10 sends uploads (STOW-RS) to `${wadoRoot}/studies`; the proxy forwards them
        stowRoot: '/proxy/dicom/stow',
        dicomUploadEnabled: true,
      },
    },
    {
      // Where the Save button sends the DICOM SEG; the server makes it the series' final label.
      // OHIF 3.10 stores (STOW-RS) to `${wadoRoot}/studies`: its stowRoot setting is not read.
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'cardiac_mi_labels',
      configuration: {
        ...archive,
        friendlyName: 'cardiac_mi labels',
        name: 'cardiac_mi_labels',
        wadoRoot: '/viewer/labels',
        stowRoot: '/viewer/labels',
        dicomUploadEnabled: false,
      },
    },
  ],
};
