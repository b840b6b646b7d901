#!/usr/bin/env bash
# Prints ecto-tunnel's version, read from its only source, Sources/EctoPlatform/Version.swift
# (what `ecto-tunnel --version` prints and the .deb's Version: is).
set -euo pipefail
file="$(dirname "$0")/../Sources/EctoPlatform/Version.swift"
version=$(sed -n 's/^ *public static let current = "\([0-9][0-9A-Za-z.+~]*\)"$/\1/p' "$file")
[[ -n "$version" ]] || { echo "version.sh: no 'public static let current = \"X.Y.Z\"' line in $file" >&2; exit 1; }
echo "$version"
