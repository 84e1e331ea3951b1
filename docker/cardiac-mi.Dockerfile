# cardiac_mi in a container: the command-line tools (phantom, prepare, convert, infer, report, simulate,
# gan, ...) and the product server, `cardiac-mi serve` (MONAI Label with the cardiac_mi app and OHIF).
# Build from the repository root:
#   docker build -f docker/cardiac-mi.Dockerfile -t cardiac-mi .
#   docker run --rm -v "$PWD/out:/out" cardiac-mi phantom --out /out --cases 10 --seed 0
# The server alone, with its embedded Orthanc (SQLite) inside the container and the sample studies:
#   docker run --rm -p 127.0.0.1:8000:8000 -v cardiac-mi-standalone:/var/lib/cardiac-mi cardiac-mi serve
# With Orthanc on PostgreSQL: docker/docker-compose.yml, see docs/deploy.md.
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="cardiac-mi" \
      org.opencontainers.image.description="Myocardial infarct segmentation in cardiac LGE MRI: CLI and MONAI Label server" \
      org.opencontainers.image.licenses="Apache-2.0"

# Debian's Orthanc and DICOMweb plugin (the same packages scripts/setup.sh installs), for the embedded
# Orthanc of `serve` without --studies and of `report --store`. Nothing starts Debian's own service here.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends orthanc orthanc-dicomweb \
 && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/cardiac_mi

# The pinned working set, installed as scripts/setup.sh does: build-constraints.txt as PIP_CONSTRAINT (it
# reaches the isolated build of sam2, which builds against torch) and SAM2_BUILD_CUDA=0. PyTorch's CPU
# index is added so that torch==2.13.0 resolves to the CPU build 2.13.0+cpu, here and in that isolated
# build, instead of PyPI's CUDA build and its gigabytes of NVIDIA libraries; the build fails if a CUDA
# torch got in anyway. setuptools is the one the editable install below builds with.
COPY requirements.txt build-constraints.txt ./
RUN PIP_CONSTRAINT=/opt/cardiac_mi/build-constraints.txt SAM2_BUILD_CUDA=0 \
    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
    pip install -r requirements.txt setuptools==84.2.1 \
 && python -c "import sys, torch; sys.exit(f'CUDA torch {torch.__version__} installed' if torch.version.cuda else 0)"

# Editable, as scripts/setup.sh installs it: `serve` runs the MONAI Label app from apps/ and finds the
# shipped models/, sample-data/ and the OHIF build through the source tree.
COPY pyproject.toml README.md ./
COPY lgemri ./lgemri
COPY cardiac_mi ./cardiac_mi
COPY simulator ./simulator
COPY gan ./gan
COPY apps ./apps
COPY models ./models
COPY sample-data ./sample-data
RUN pip install --no-deps --no-build-isolation -e . \
 && pip check

# An unprivileged user. It writes the state folder (a volume), the models folder (a volume in
# docker-compose.yml, seeded from the shipped models) and the run-time folders MONAI Label keeps in the app.
ENV CARDIAC_MI_STATE=/var/lib/cardiac-mi \
    CARDIAC_MI_MODELS=/opt/cardiac_mi/models \
    CARDIAC_MI_HOST=0.0.0.0
RUN groupadd --gid 1000 cardiac \
 && useradd --create-home --uid 1000 --gid cardiac cardiac \
 && mkdir -p /var/lib/cardiac-mi apps/cardiac_mi/logs apps/cardiac_mi/model apps/cardiac_mi/bin \
 && chown -R cardiac:cardiac /var/lib/cardiac-mi models apps/cardiac_mi/logs apps/cardiac_mi/model apps/cardiac_mi/bin
USER 1000:1000
EXPOSE 8000
ENTRYPOINT ["cardiac-mi"]
CMD ["--help"]
