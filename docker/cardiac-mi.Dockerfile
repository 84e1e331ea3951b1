# cardiac_mi command-line tools (phantom, prepare, convert, infer, report, simulate, gan, ...) in a container.
# Build from the repository root:
#   docker build -f docker/cardiac-mi.Dockerfile -t cardiac-mi .
#   docker run --rm -v "$PWD/out:/out" cardiac-mi phantom --out /out --cases 10 --seed 0
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 SAM2_BUILD_CUDA=0 \
    PIP_CONSTRAINT=/opt/cardiac_mi/build-constraints.txt
WORKDIR /opt/cardiac_mi
COPY requirements.txt build-constraints.txt ./
RUN pip install -r requirements.txt
COPY pyproject.toml README.md ./
COPY lgemri ./lgemri
COPY cardiac_mi ./cardiac_mi
COPY simulator ./simulator
COPY gan ./gan
COPY models ./models
RUN pip install --no-deps --no-build-isolation .
ENV CARDIAC_MI_MODELS=/opt/cardiac_mi/models
RUN useradd --create-home --uid 1000 cardiac
USER cardiac
ENTRYPOINT ["cardiac-mi"]
CMD ["--help"]
