/*
 * "Cardiac MI" OHIF mode, loaded at run time (app-config.js lists it; OHIF import()s it).
 *
 * It takes the id of MONAI Label's own mode, which OHIF then skips (the first mode with an id wins):
 * the study list offers "Cardiac MI" instead of a mode that opens an MPR and cannot save.
 *
 * Layout: the series list on the left; on the right the MONAI Label panel (run the segmentation) and
 * OHIF's Segmentation panel (the label classes, their visibility, the brush and eraser); one viewport
 * with the short-axis stack (hanging protocol of extension.js); a Save button in the toolbar.
 */

const EXTENSION = '/ohif/cardiac-mi/extension.js';

const ohif = {
  layout: '@ohif/extension-default.layoutTemplateModule.viewerLayout',
  stack: '@ohif/extension-default.sopClassHandlerModule.stack',
  seriesList: '@ohif/extension-default.panelModule.seriesList',
  viewport: '@ohif/extension-cornerstone.viewportModule.cornerstone',
  segmentationPanel: '@ohif/extension-cornerstone.panelModule.panelSegmentationWithTools',
  seg: '@ohif/extension-cornerstone-dicom-seg.sopClassHandlerModule.dicom-seg',
  segViewport: '@ohif/extension-cornerstone-dicom-seg.viewportModule.dicom-seg',
  monaiLabelPanel: '@ohif/extension-monai-label.panelModule.monailabel',
  resultsPanel: '@cardiac-mi/extension-viewer.panelModule.cardiacMiResults',
};

// Loaded in this order when the mode opens; ours last, so that its commands win over OHIF's.
const extensionDependencies = {
  '@ohif/extension-default': '^3.0.0',
  '@ohif/extension-cornerstone': '^3.0.0',
  '@ohif/extension-cornerstone-dicom-seg': '^3.0.0',
  '@ohif/extension-monai-label': '^3.0.0',
  [EXTENSION]: '^1.0.0',
};

const TOOL_GROUP = 'default';
const activate = { commandName: 'setToolActiveToolbar', commandOptions: { toolGroupIds: [TOOL_GROUP] } };

function tool(id, icon, label) {
  return { id, uiType: 'ohif.radioGroup', props: { icon, label, commands: activate, evaluate: 'evaluate.cornerstoneTool' } };
}

function brush(id, icon, label, toolName) {
  return {
    id,
    icon,
    label,
    evaluate: {
      name: 'evaluate.cornerstone.segmentation',
      toolNames: [toolName],
      disabledText: 'Run the segmentation in the MONAI Label panel first',
    },
    options: [
      {
        name: 'Radius (mm)',
        id: `${id.toLowerCase()}-radius`,
        type: 'range',
        min: 0.5,
        max: 20,
        step: 0.5,
        value: 3,
        // selecting the tool runs its options' commands: this sets the size and activates the tool
        commands: [
          { commandName: 'setBrushSize', commandOptions: { toolNames: [toolName] } },
          { commandName: 'setToolActiveToolbar', commandOptions: { toolName, toolGroupIds: [TOOL_GROUP] } },
        ],
      },
    ],
  };
}

function action(id, icon, label, tooltip, commands) {
  return { id, uiType: 'ohif.radioGroup', props: { icon, label, tooltip, commands, evaluate: 'evaluate.action' } };
}

const toolbarButtons = [
  tool('WindowLevel', 'tool-window-level', 'Window Level'),
  tool('Pan', 'tool-move', 'Pan'),
  tool('Zoom', 'tool-zoom', 'Zoom'),
  tool('StackScroll', 'tool-stack-scroll', 'Scroll slices'),
  // measurements on the image (cornerstone draws each with its value: mm, degrees, area with mean and SD)
  tool('Length', 'tool-length', 'Length (mm)'),
  tool('Angle', 'tool-angle', 'Angle'),
  tool('EllipticalROI', 'tool-ellipse', 'Ellipse ROI (mean, SD)'),
  tool('RectangleROI', 'tool-rectangle', 'Rectangle ROI (mean, SD)'),
  action('CardiacMiUndo', 'prev-arrow', 'Undo', 'Undo the last change of the segmentation (Ctrl+Z)', 'cardiacMiUndo'),
  action('CardiacMiRedo', 'next-arrow', 'Redo', 'Redo (Ctrl+Y)', 'cardiacMiRedo'),
  action('CardiacMiOutline', 'tool-freehand-polygon', 'Outline', 'Overlay filled or as outlines (O)', 'cardiacMiToggleOutline'),
  {
    id: 'Capture',
    uiType: 'ohif.radioGroup',
    props: { icon: 'tool-capture', label: 'Capture', tooltip: 'Download the slice on screen as a PNG', commands: 'cardiacMiCapture', evaluate: 'evaluate.action' },
  },
  {
    id: 'CardiacMiSave',
    uiType: 'ohif.radioGroup',
    props: {
      icon: 'icon-upload',
      label: 'Save label',
      tooltip: 'Save the segmentation as the final label of this series (DICOM SEG in the archive)',
      commands: 'cardiacMiSaveLabel',
      evaluate: 'evaluate.action',
    },
  },
  {
    id: 'BrushTools',
    uiType: 'ohif.buttonGroup',
    props: {
      groupId: 'BrushTools',
      items: [
        brush('Brush', 'icon-tool-brush', 'Brush', 'CircularBrush'),
        brush('Eraser', 'icon-tool-eraser', 'Eraser', 'CircularEraser'),
      ],
    },
  },
];

const hotkeys = [
  { commandName: 'nextImage', label: 'Next slice', keys: ['down'] },
  { commandName: 'previousImage', label: 'Previous slice', keys: ['up'] },
  { commandName: 'resetViewport', label: 'Reset', keys: ['space'] },
  { commandName: 'cardiacMiSaveLabel', label: 'Save label', keys: ['ctrl+shift+s'] },
  { commandName: 'cardiacMiUndo', label: 'Undo', keys: ['ctrl+z'] },
  { commandName: 'cardiacMiRedo', label: 'Redo', keys: ['ctrl+y'] },
  { commandName: 'cardiacMiToggleOutline', label: 'Outline overlay', keys: ['o'] },
];

function initToolGroup(extensionManager, toolGroupService) {
  const { toolNames, Enums } = extensionManager.getModuleEntry('@ohif/extension-cornerstone.utilityModule.tools').exports;
  const { Primary, Secondary, Auxiliary, Wheel } = Enums.MouseBindings;
  toolGroupService.createToolGroupAndAddTools(TOOL_GROUP, {
    active: [
      { toolName: toolNames.WindowLevel, bindings: [{ mouseButton: Primary }] },
      { toolName: toolNames.Pan, bindings: [{ mouseButton: Auxiliary }] },
      { toolName: toolNames.Zoom, bindings: [{ mouseButton: Secondary }] },
      { toolName: toolNames.StackScroll, bindings: [{ mouseButton: Wheel }] },
    ],
    passive: [
      { toolName: 'CircularBrush', parentTool: 'Brush', configuration: { activeStrategy: 'FILL_INSIDE_CIRCLE' } },
      { toolName: 'CircularEraser', parentTool: 'Brush', configuration: { activeStrategy: 'ERASE_INSIDE_CIRCLE' } },
      // the point-prompt tab of MONAI Label's panel uses this tool
      { toolName: 'ProbeMONAILabel' },
      { toolName: toolNames.Length },
      { toolName: toolNames.Angle },
      { toolName: toolNames.EllipticalROI },
      { toolName: toolNames.RectangleROI },
    ],
  });
}

let disconnectPanel = null;

function modeFactory() {
  return {
    id: '@ohif/mode-monai-label',
    routeName: 'cardiac-mi',
    displayName: 'Cardiac MI',
    onModeEnter: ({ servicesManager, extensionManager, commandsManager }) => {
      const { measurementService, toolbarService, toolGroupService } = servicesManager.services;
      measurementService.clearMeasurements();
      initToolGroup(extensionManager, toolGroupService);
      toolbarService.addButtons(toolbarButtons);
      toolbarService.createButtonSection('primary', ['WindowLevel', 'Pan', 'Zoom', 'StackScroll', 'Length', 'Angle',
        'EllipticalROI', 'RectangleROI', 'CardiacMiUndo', 'CardiacMiRedo', 'CardiacMiOutline', 'Capture', 'CardiacMiSave']);
      toolbarService.createButtonSection('segmentationToolbox', ['BrushTools']);
      disconnectPanel = commandsManager.runCommand('cardiacMiConnectPanel', {}, 'CARDIAC_MI');
    },
    onModeExit: ({ servicesManager }) => {
      const { toolGroupService, syncGroupService, segmentationService, cornerstoneViewportService, uiDialogService, uiModalService } =
        servicesManager.services;
      if (disconnectPanel) {
        disconnectPanel();
        disconnectPanel = null;
      }
      uiDialogService.dismissAll();
      uiModalService.hide();
      toolGroupService.destroy();
      syncGroupService.destroy();
      segmentationService.destroy();
      cornerstoneViewportService.destroy();
    },
    validationTags: { study: [], series: [] },
    isValidMode: ({ modalities }) => ({
      valid: modalities.split('\\').includes('MR'),
      description: 'Cardiac MI needs an MR (LGE) series in the study',
    }),
    routes: [
      {
        path: 'cardiac-mi',
        layoutTemplate: () => ({
          id: ohif.layout,
          props: {
            leftPanels: [ohif.seriesList],
            rightPanels: [ohif.monaiLabelPanel, ohif.resultsPanel, ohif.segmentationPanel],
            rightPanelClosed: false,
            viewports: [
              { namespace: ohif.viewport, displaySetsToDisplay: [ohif.stack] },
              { namespace: ohif.segViewport, displaySetsToDisplay: [ohif.seg] },
            ],
          },
        }),
      },
    ],
    extensions: extensionDependencies,
    hangingProtocol: 'cardiacMiShortAxis',
    sopClassHandlers: [ohif.stack, ohif.seg],
    hotkeys,
  };
}

export default {
  id: '@ohif/mode-monai-label',
  modeFactory,
  extensionDependencies,
};
