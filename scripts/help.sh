# help.sh - sourced by the scripts here, before anything else: with -h or --help as the first
# argument, prints the calling script's head comment (its lines 2 to the first line that is
# not a comment) and exits 0.
case "${1:-}" in
-h | --help)
    sed -n '2,/^[^#]/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac
