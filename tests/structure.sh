#!/usr/bin/env bash
# structure.sh — checks of the build's shape that the compiler alone cannot
# make. `make test` runs both through the runner (tests/test_build.c).
#
#   tests/structure.sh layers [ROOT]   the folder graph on the sources
#   tests/structure.sh exports BUILD   libtokend.so exports tokend.h only
#
# The folder graph (docs/design.md, "The map"):
#
#   include/  <-  proto/ (and the code generated from proto/tokend.proto)
#             <-  client/, service/, gateway/
#
# Each folder may include its own headers and those of the folders to its
# left, nothing else: client/, service/ and gateway/ never include one
# another, proto/ includes only include/ and generated code, include/ only
# system headers. tests/, bench/ and fuzz/ may include anything. A quoted
# include is resolved the way the compiler would (the file's own folder
# first, then the allowed folders); one that names a path ("../x.h",
# "service/x.h") is refused outright, since it would get round the
# per-folder include paths of the Makefile. Prints each violation as
# "FILE:LINE: includes "X" (found in FOLDER/, not allowed from F/)" and
# exits 1 if there is any.
set -u

allowed() {
    case "$1" in
        include) echo "include" ;;
        proto) echo "proto include" ;;
        client | service | gateway) echo "$1 proto include" ;;
        *) echo "" ;;
    esac
}

layers() {
    local root=${1:-.} bad=0 folder file line name dir found where
    cd "$root" || { echo "structure.sh: no such folder: $root" >&2; exit 2; }
    for folder in include proto client service gateway; do
        [ -d "$folder" ] || { echo "structure.sh: $root has no $folder/" >&2; exit 2; }
        for file in "$folder"/*.[ch]; do
            [ -e "$file" ] || continue
            while IFS=: read -r line name; do
                if [[ "$name" == */* ]]; then
                    echo "$file:$line: includes \"$name\" by path (use the folder's include path)"
                    bad=1
                    continue
                fi
                # Generated from proto/tokend.proto: part of the shared layer.
                if [[ "$name" == *.pb-c.h ]]; then
                    if [ "$folder" = include ]; then
                        echo "$file:$line: includes generated \"$name\" (the public header may not)"
                        bad=1
                    fi
                    continue
                fi
                found=""
                for dir in $(allowed "$folder"); do
                    if [ -e "$dir/$name" ]; then
                        found=$dir
                        break
                    fi
                done
                [ -n "$found" ] && continue
                where=$(for dir in include proto client service gateway; do
                    [ -e "$dir/$name" ] && echo "$dir/"; done | tr '\n' ' ')
                if [ -n "$where" ]; then
                    echo "$file:$line: includes \"$name\" (found in ${where% }, not allowed from $folder/)"
                else
                    echo "$file:$line: includes \"$name\", which no allowed folder has"
                fi
                bad=1
            done < <(awk '/^[ \t]*#[ \t]*include[ \t]*"/ {
                              s = $0; sub(/^[^"]*"/, "", s); sub(/".*/, "", s);
                              print FNR ":" s }' "$file")
        done
    done
    if [ "$bad" -eq 0 ]; then
        echo "layers: ok (include <- proto <- client, service, gateway)"
    fi
    return "$bad"
}

exports() {
    local build=${1:-build} header want got extra missing
    header="$(dirname "$0")/../include/tokend.h"
    [ -f "$build/libtokend.so" ] || { echo "structure.sh: no $build/libtokend.so" >&2; exit 2; }
    # The functions tokend.h declares: a name followed by "(" at the start
    # of a declaration (return type first), one per line.
    want=$(grep -oE '^[a-z][a-z_ ]*[ *]tokend_[a-z_]+\(' "$header" |
           grep -oE 'tokend_[a-z_]+' | sort -u)
    got=$(nm -D --defined-only "$build/libtokend.so" | awk '{print $NF}' | sed 's/@.*//' | sort -u)
    extra=$(comm -13 <(echo "$want") <(echo "$got"))
    missing=$(comm -23 <(echo "$want") <(echo "$got"))
    if [ -n "$extra" ]; then
        echo "exports: libtokend.so exports what tokend.h does not declare:"
        echo "$extra" | head -n 20 | sed 's/^/  /'
    fi
    if [ -n "$missing" ]; then
        echo "exports: tokend.h declares what libtokend.so does not export (client/libtokend.map?):"
        echo "$missing" | sed 's/^/  /'
    fi
    [ -z "$extra" ] && [ -z "$missing" ] || return 1
    echo "exports: ok ($(echo "$want" | wc -l) functions of tokend.h, nothing else)"
}

case "${1:-}" in
    layers) layers "${2:-.}" ;;
    exports) exports "${2:-build}" ;;
    *)
        echo "usage: tests/structure.sh layers [ROOT] | exports BUILD" >&2
        exit 2
        ;;
esac
