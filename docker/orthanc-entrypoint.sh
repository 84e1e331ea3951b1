#!/bin/sh
# Start Orthanc with the configuration given as arguments (docker/orthanc.json in the image).
#
# Orthanc replaces each ${NAME} of its configuration files with the environment variable NAME, and
# with an empty string when NAME is unset: an unset ORTHANC_PASSWORD would let anyone in with an
# empty password. So every variable the configuration uses must be set and non-empty, and must not
# contain characters that would break the JSON it is pasted into.
set -eu

missing=""
for name in ORTHANC_USER ORTHANC_PASSWORD ORTHANC_DB_HOST ORTHANC_DB_NAME ORTHANC_DB_USER ORTHANC_DB_PASSWORD; do
  eval "value=\${$name:-}"
  if [ -z "$value" ]; then
    missing="$missing $name"
    continue
  fi
  case "$value" in
    *'"'* | *\\* | *[[:cntrl:]]*)
      printf '%s\n' "orthanc-entrypoint: $name may not contain '\"', '\\' or control characters" >&2
      exit 2
      ;;
  esac
done
if [ -n "$missing" ]; then
  echo "orthanc-entrypoint: set$missing (see docker/.env.example)" >&2
  exit 2
fi
case "$ORTHANC_USER" in
  *:*)
    echo "orthanc-entrypoint: ORTHANC_USER may not contain ':'" >&2
    exit 2
    ;;
esac

exec /usr/sbin/Orthanc "$@"
