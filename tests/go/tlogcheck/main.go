// main.go - tlogcheck: verifies sediment checkpoints and Merkle proofs with Go's sumdb/note and sumdb/tlog.
//
// sediment signs its ledger checkpoints as C2SP signed notes and proves inclusion and
// consistency with RFC 9162 audit paths. This program checks those objects with an
// implementation we did not write: golang.org/x/mod/sumdb/note (Ed25519 signed notes) and
// golang.org/x/mod/sumdb/tlog (RFC 6962 trees, whose RecordProof and TreeProof are the RFC 9162
// PATH and PROOF lists in the same order: the sibling of the deepest node first, the sibling
// of the root's child last). It imports nothing else outside the standard library, so it
// builds offline in GOPATH mode against Debian's golang-golang-x-mod-dev:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o tlogcheck ./tests/go/tlogcheck
//	./tlogcheck [-v] INPUT.json
//
// INPUT.json (every field but vkey and checkpoints may be left out; unknown fields are an
// error, so that a misspelt list is not silently skipped):
//
//	{
//	  "vkey": "<note verifier key: name+hex keyid+base64(0x01 || Ed25519 public key)>",
//	  "checkpoints": ["<signed note: checkpoint body, blank line, signature lines>", ...],
//	  "inclusion":   [{"checkpoint": i, "index": n, "leaf": "<hex of the leaf DATA>",
//	                   "hashes": ["<hex of 32 bytes>", ...]}, ...],
//	  "consistency": [{"from": i, "to": j, "hashes": ["<hex>", ...]}, ...],
//	  "bad_inclusion":   [same shape as inclusion; each must be rejected],
//	  "bad_consistency": [same shape as consistency; each must be rejected],
//	  "bad_checkpoints": ["<signed note that must not open as a checkpoint>", ...]
//	}
//
// checkpoint, from and to index the checkpoints list, which must all open with vkey, parse as
// C2SP tlog-checkpoints (origin line, decimal size, base64 of the 32-byte root, then optional
// non-empty extension lines) and share one origin. An inclusion item holds when
// tlog.CheckRecord accepts the proof that leaf `index`, hashed with tlog.RecordHash (SHA-256 of
// 0x00 || leaf data), is in the checkpoint's tree; a consistency item when tlog.CheckTree
// accepts the proof that checkpoint `from`'s tree is a prefix of checkpoint `to`'s (tlog needs
// a from size of at least 1). A bad item counts as rejected only when note or tlog rejects it:
// a bad item that is itself malformed (bad hex, an index past the checkpoints list, a
// reference to a checkpoint that did not open) is a failure, not a rejection.
//
// Output, on stdout, one JSON line:
//
//	{"checkpoints_ok":n,"inclusion_ok":n,"consistency_ok":n,"bad_rejected":n,"failures":["..."]}
//
// Exit status: 0 when every good item verified and every bad item was rejected; 1 when any
// did not; 2 when the input could not be read or decoded.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const usage = `usage: tlogcheck [-v] INPUT.json

Verifies signed checkpoints, inclusion proofs and consistency proofs with Go's
golang.org/x/mod/sumdb/note and sumdb/tlog, and checks that every bad item is rejected.
The input format is documented at the top of tests/go/tlogcheck/main.go.
-v prints why each bad item was rejected, on stderr.
Exit status: 0 all good items verified and all bad items rejected, 1 otherwise, 2 bad input.
`

type inclusionItem struct {
	Checkpoint *int     `json:"checkpoint"`
	Index      *int64   `json:"index"`
	Leaf       *string  `json:"leaf"`
	Hashes     []string `json:"hashes"`
}

type consistencyItem struct {
	From   *int     `json:"from"`
	To     *int     `json:"to"`
	Hashes []string `json:"hashes"`
}

type input struct {
	Vkey           string            `json:"vkey"`
	Checkpoints    []string          `json:"checkpoints"`
	Inclusion      []inclusionItem   `json:"inclusion"`
	Consistency    []consistencyItem `json:"consistency"`
	BadInclusion   []inclusionItem   `json:"bad_inclusion"`
	BadConsistency []consistencyItem `json:"bad_consistency"`
	BadCheckpoints []string          `json:"bad_checkpoints"`
}

type summary struct {
	CheckpointsOK int      `json:"checkpoints_ok"`
	InclusionOK   int      `json:"inclusion_ok"`
	ConsistencyOK int      `json:"consistency_ok"`
	BadRejected   int      `json:"bad_rejected"`
	Failures      []string `json:"failures"`
}

// checkpoint is one opened and parsed checkpoint.
type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

// parseCheckpoint parses a C2SP tlog-checkpoint body strictly. tlog.ParseTree accepts only the
// go.sum database's own header line, so the three lines are read here.
func parseCheckpoint(text string) (checkpoint, error) {
	var c checkpoint
	if !strings.HasSuffix(text, "\n") {
		return c, fmt.Errorf("checkpoint body does not end with a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return c, fmt.Errorf("checkpoint body has %d lines, want at least 3", len(lines))
	}
	if lines[0] == "" {
		return c, fmt.Errorf("checkpoint origin line is empty")
	}
	c.origin = lines[0]
	sizeLine := lines[1]
	if sizeLine == "" || sizeLine[0] < '0' || sizeLine[0] > '9' || (len(sizeLine) > 1 && sizeLine[0] == '0') {
		return c, fmt.Errorf("checkpoint size line %q is not a canonical decimal", sizeLine)
	}
	size, err := strconv.ParseInt(sizeLine, 10, 64)
	if err != nil {
		return c, fmt.Errorf("checkpoint size line %q: %v", sizeLine, err)
	}
	c.size = size
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return c, fmt.Errorf("checkpoint root line %q is not the base64 of %d bytes", lines[2], tlog.HashSize)
	}
	copy(c.root[:], root)
	for i, ext := range lines[3:] {
		if ext == "" {
			return c, fmt.Errorf("checkpoint extension line %d is empty", i+1)
		}
	}
	return c, nil
}

// openCheckpoint opens a signed note with the one known verifier and parses its body.
func openCheckpoint(msg string, verifiers note.Verifiers) (checkpoint, error) {
	n, err := note.Open([]byte(msg), verifiers)
	if err != nil {
		return checkpoint{}, fmt.Errorf("note.Open: %v", err)
	}
	return parseCheckpoint(n.Text)
}

func parseHashes(hexes []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(hexes))
	for i, h := range hexes {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != tlog.HashSize {
			return nil, fmt.Errorf("hashes[%d] %q is not the hex of %d bytes", i, h, tlog.HashSize)
		}
		copy(out[i][:], b)
	}
	return out, nil
}

// checker holds the opened checkpoints; nil entries did not open.
type checker struct {
	cps []*checkpoint
}

func (c *checker) checkpointAt(field string, i *int) (*checkpoint, error) {
	if i == nil {
		return nil, fmt.Errorf("%s is missing", field)
	}
	if *i < 0 || *i >= len(c.cps) {
		return nil, fmt.Errorf("%s %d is not an index into checkpoints (%d of them)", field, *i, len(c.cps))
	}
	if c.cps[*i] == nil {
		return nil, fmt.Errorf("%s %d refers to a checkpoint that did not verify", field, *i)
	}
	return c.cps[*i], nil
}

// inclusion returns a malformed-item error (the item cannot be checked at all) or the
// verdict of tlog.CheckRecord (nil when the proof holds).
func (c *checker) inclusion(it inclusionItem) (malformed error, verdict error) {
	cp, err := c.checkpointAt("checkpoint", it.Checkpoint)
	if err != nil {
		return err, nil
	}
	if it.Index == nil {
		return fmt.Errorf("index is missing"), nil
	}
	if it.Leaf == nil {
		return fmt.Errorf("leaf is missing"), nil
	}
	leaf, err := hex.DecodeString(*it.Leaf)
	if err != nil {
		return fmt.Errorf("leaf is not hex: %v", err), nil
	}
	proof, err := parseHashes(it.Hashes)
	if err != nil {
		return err, nil
	}
	return nil, tlog.CheckRecord(tlog.RecordProof(proof), cp.size, cp.root, *it.Index, tlog.RecordHash(leaf))
}

// consistency is inclusion's counterpart for tlog.CheckTree.
func (c *checker) consistency(it consistencyItem) (malformed error, verdict error) {
	from, err := c.checkpointAt("from", it.From)
	if err != nil {
		return err, nil
	}
	to, err := c.checkpointAt("to", it.To)
	if err != nil {
		return err, nil
	}
	proof, err := parseHashes(it.Hashes)
	if err != nil {
		return err, nil
	}
	return nil, tlog.CheckTree(tlog.TreeProof(proof), to.size, to.root, from.size, from.root)
}

func describeInclusion(it inclusionItem, c *checker) string {
	s := ""
	if it.Checkpoint != nil && *it.Checkpoint >= 0 && *it.Checkpoint < len(c.cps) && c.cps[*it.Checkpoint] != nil {
		s = fmt.Sprintf(" (size %d", c.cps[*it.Checkpoint].size)
		if it.Index != nil {
			s += fmt.Sprintf(", index %d", *it.Index)
		}
		s += ")"
	}
	return s
}

func describeConsistency(it consistencyItem, c *checker) string {
	size := func(i *int) string {
		if i != nil && *i >= 0 && *i < len(c.cps) && c.cps[*i] != nil {
			return strconv.FormatInt(c.cps[*i].size, 10)
		}
		return "?"
	}
	return fmt.Sprintf(" (size %s to %s)", size(it.From), size(it.To))
}

func run(in *input, verbose bool) summary {
	sum := summary{Failures: []string{}}
	fail := func(format string, args ...interface{}) {
		sum.Failures = append(sum.Failures, fmt.Sprintf(format, args...))
	}
	rejected := func(what string, why error) {
		sum.BadRejected++
		if verbose {
			fmt.Fprintf(os.Stderr, "tlogcheck: rejected as it should be: %s: %v\n", what, why)
		}
	}

	v, err := note.NewVerifier(in.Vkey)
	if err != nil {
		fail("vkey: %v", err)
		return sum
	}
	verifiers := note.VerifierList(v)

	c := &checker{cps: make([]*checkpoint, len(in.Checkpoints))}
	for i, msg := range in.Checkpoints {
		cp, err := openCheckpoint(msg, verifiers)
		if err != nil {
			fail("checkpoints[%d]: %v", i, err)
			continue
		}
		if i > 0 && c.cps[0] != nil && cp.origin != c.cps[0].origin {
			fail("checkpoints[%d]: origin %q differs from checkpoints[0]'s %q", i, cp.origin, c.cps[0].origin)
			continue
		}
		c.cps[i] = &cp
		sum.CheckpointsOK++
	}

	for i, it := range in.Inclusion {
		malformed, verdict := c.inclusion(it)
		switch {
		case malformed != nil:
			fail("inclusion[%d]: %v", i, malformed)
		case verdict != nil:
			fail("inclusion[%d]%s: %v", i, describeInclusion(it, c), verdict)
		default:
			sum.InclusionOK++
		}
	}
	for i, it := range in.Consistency {
		malformed, verdict := c.consistency(it)
		switch {
		case malformed != nil:
			fail("consistency[%d]: %v", i, malformed)
		case verdict != nil:
			fail("consistency[%d]%s: %v", i, describeConsistency(it, c), verdict)
		default:
			sum.ConsistencyOK++
		}
	}

	for i, it := range in.BadInclusion {
		malformed, verdict := c.inclusion(it)
		what := fmt.Sprintf("bad_inclusion[%d]%s", i, describeInclusion(it, c))
		switch {
		case malformed != nil:
			fail("%s: malformed, so not a test of tlog: %v", what, malformed)
		case verdict == nil:
			fail("%s: tlog.CheckRecord accepted a proof that must fail", what)
		default:
			rejected(what, verdict)
		}
	}
	for i, it := range in.BadConsistency {
		malformed, verdict := c.consistency(it)
		what := fmt.Sprintf("bad_consistency[%d]%s", i, describeConsistency(it, c))
		switch {
		case malformed != nil:
			fail("%s: malformed, so not a test of tlog: %v", what, malformed)
		case verdict == nil:
			fail("%s: tlog.CheckTree accepted a proof that must fail", what)
		default:
			rejected(what, verdict)
		}
	}
	for i, msg := range in.BadCheckpoints {
		if _, err := openCheckpoint(msg, verifiers); err == nil {
			fail("bad_checkpoints[%d]: opened and parsed, but must fail", i)
		} else {
			rejected(fmt.Sprintf("bad_checkpoints[%d]", i), err)
		}
	}
	return sum
}

func main() {
	verbose := false
	var path string
	for _, arg := range os.Args[1:] {
		switch {
		case arg == "-h" || arg == "--help" || arg == "-help":
			fmt.Print(usage)
			os.Exit(0)
		case arg == "-v":
			verbose = true
		case path == "" && (arg == "-" || !strings.HasPrefix(arg, "-")):
			path = arg
		default:
			fmt.Fprintf(os.Stderr, "tlogcheck: unexpected argument %q\n%s", arg, usage)
			os.Exit(2)
		}
	}
	if path == "" {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}

	var data []byte
	var err error
	if path == "-" {
		var buf bytes.Buffer
		_, err = buf.ReadFrom(os.Stdin)
		data = buf.Bytes()
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tlogcheck: %v\n", err)
		os.Exit(2)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var in input
	if err := dec.Decode(&in); err != nil {
		fmt.Fprintf(os.Stderr, "tlogcheck: %s: %v\n", path, err)
		os.Exit(2)
	}
	if _, err := dec.Token(); err != io.EOF {
		fmt.Fprintf(os.Stderr, "tlogcheck: %s: trailing data after the JSON object\n", path)
		os.Exit(2)
	}
	if in.Vkey == "" {
		fmt.Fprintf(os.Stderr, "tlogcheck: %s: vkey is missing\n", path)
		os.Exit(2)
	}
	if len(in.Checkpoints) == 0 {
		fmt.Fprintf(os.Stderr, "tlogcheck: %s: checkpoints is empty: nothing to verify\n", path)
		os.Exit(2)
	}

	sum := run(&in, verbose)
	out, err := json.Marshal(sum)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tlogcheck: %v\n", err)
		os.Exit(2)
	}
	fmt.Println(string(out))
	if len(sum.Failures) > 0 {
		for _, f := range sum.Failures {
			fmt.Fprintf(os.Stderr, "tlogcheck: FAIL %s\n", f)
		}
		os.Exit(1)
	}
}
