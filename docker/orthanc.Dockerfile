# Orthanc for cardiac_mi with its index in PostgreSQL: Debian's Orthanc, DICOMweb and PostgreSQL plugins
# (the Orthanc of scripts/setup.sh, plus orthanc-postgresql). The DICOM files stay on the filesystem, in
# /var/lib/orthanc/db (a volume); the index (patients, studies, series, instances, tags) is in PostgreSQL.
# Build from this folder (docker-compose.yml does it):
#   docker build -f docker/orthanc.Dockerfile -t cardiac-mi-orthanc docker/
# Settings come from the environment; docker/orthanc-entrypoint.sh refuses to start without them:
#   ORTHANC_USER, ORTHANC_PASSWORD          HTTP basic-auth account (REST API, DICOMweb, Orthanc Explorer)
#   ORTHANC_DB_HOST, ORTHANC_DB_NAME,       the PostgreSQL server (port 5432), database and account
#   ORTHANC_DB_USER, ORTHANC_DB_PASSWORD
# Ports: 8042 HTTP (REST, /dicom-web/, /app/explorer.html), 4242 DICOM (AE title CARDIACMI).
FROM debian:bookworm-slim

LABEL org.opencontainers.image.title="cardiac-mi-orthanc" \
      org.opencontainers.image.description="Orthanc with DICOMweb and a PostgreSQL index, configured for cardiac_mi" \
      org.opencontainers.image.licenses="Apache-2.0"

# The orthanc account is made first, with a fixed uid/gid (999) that the volume's files keep across
# rebuilds; the package's installer then uses it. curl is for the health check (GET /system).
# hadolint ignore=DL3008
RUN groupadd --system --gid 999 orthanc \
 && useradd --system --uid 999 --gid orthanc --home-dir /var/lib/orthanc --no-create-home \
            --shell /usr/sbin/nologin orthanc \
 && apt-get update \
 && apt-get install -y --no-install-recommends orthanc orthanc-dicomweb orthanc-postgresql curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/orthanc/db \
 && chown -R orthanc:orthanc /var/lib/orthanc

COPY orthanc.json /etc/cardiac-mi/orthanc.json
COPY orthanc-entrypoint.sh /usr/local/bin/orthanc-entrypoint
RUN chmod 0755 /usr/local/bin/orthanc-entrypoint

USER 999:999
WORKDIR /var/lib/orthanc
EXPOSE 8042 4242
ENTRYPOINT ["/usr/local/bin/orthanc-entrypoint"]
CMD ["/etc/cardiac-mi/orthanc.json"]
