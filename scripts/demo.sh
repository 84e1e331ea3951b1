#!/usr/bin/env bash
# The cardiac_mi demo: set the machine up, run the batch tools on the sample studies in
# sample-data/ (segment a DICOM study with the shipped models and write its clinical report,
# convert a study, prepare the EMIDEC-layout cases into named slices and LV crops, draw every
# study with its label), then start the product: the embedded Orthanc with the sample studies
# and the MONAI Label server with its OHIF viewer, until Ctrl-C. DEMO_NO_SERVE=1 skips that.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out="${1:-demo-output}"
cli=.venv/bin/cardiac-mi
mkdir -p "$out/previews"
for case in sample-data/emidec/Case_*; do
  id=$(basename "$case")
  $cli --quiet preview --image "$case/Images/$id.nii.gz" --label "$case/Contours/$id.nii.gz" --out "$out/previews/$id.png"
done
first=$(ls -d sample-data/dicom/Case_* | head -n 1)
$cli convert --input "$first" --out "$out/$(basename "$first")-from-dicom.nii.gz"
$cli prepare --emidec sample-data/emidec --out "$out/prepared"
study=sample-data/dicom/Case_P001
$cli infer --input "$study" --out "$out/infer"
$cli --quiet preview --image "$study" --label "$out/infer/Case_P001.nii.gz" --out "$out/infer/Case_P001.png"
$cli report --image "$study" --label "$out/infer/Case_P001.nii.gz" --out "$out/report"
real=../shared/data/emidec-png
if [ -d "$real" ]; then
  # real LGE (EMIDEC, CC BY-NC-SA 4.0) when it sits beside the project: a case the models never
  # trained on (the test split of the models' own split, seed 0)
  $cli --quiet prepare --emidec "$real" --out "$out/emidec-png"
  case=$(.venv/bin/python -c "import json,sys; c=json.load(open(sys.argv[1])); print(sorted(k for k,v in c.items() if v['split']=='test')[0])" "$out/emidec-png/cases.json")
  $cli infer --input "$out/emidec-png/nifti/$case/Images/$case.nii.gz" --out "$out/infer-real"
  $cli --quiet preview --image "$out/emidec-png/nifti/$case/Images/$case.nii.gz" --label "$out/infer-real/$case.nii.gz" --out "$out/infer-real/$case.png"
fi
echo
echo "cardiac_mi demo ready:"
echo "  model segmentation of $study: $out/infer/Case_P001.{nii.gz,json,png}"
echo "  clinical report (infarct %, AHA-17 bullseye, HTML/PDF, DICOM PDF + SR): $out/report/"
echo "  study previews (image + label outlines): $out/previews/*.png"
echo "  named 2D slices, 128x128 LV crops, split and manifest: $out/prepared/manifest.csv"
echo "  DICOM -> NIfTI conversion: $out/$(basename "$first")-from-dicom.nii.gz"
[ -d "$real" ] && echo "  a real EMIDEC study the models never saw, segmented: $out/infer-real/"
echo "  the models: trained on 58 real EMIDEC cases and phantom studies, research use only"
echo "    (CC BY-NC-SA 4.0, non-commercial); untested beyond EMIDEC: see models/MODEL_CARD.md"
[ "${DEMO_NO_SERVE:-0}" = 1 ] && exit 0
echo
echo "starting the product (Ctrl-C stops it; state in ./state):"
exec $cli serve --state state
