/* note.h - C2SP tlog-checkpoints signed as C2SP signed-notes with Ed25519 (SPEC §5).
 *
 * A checkpoint body is "<origin>\n<decimal size>\n<base64 root>\n" (optionally followed by
 * extension lines). A signed note is the text, a blank line, then signature lines
 * "— <name> <base64(keyid(4) || sig(64))>\n" (U+2014 EM DASH and a space), where
 * keyid = SHA-256(name || "\n" || 0x01 || pubkey)[0..4) and sig = Ed25519(text). Verifier keys
 * are "<name>+<8 hex keyid>+<base64(0x01 || pubkey)>", as Go's golang.org/x/mod/sumdb/note
 * writes them, so standard tooling verifies our checkpoints and we verify theirs.
 *
 * Every parser here takes untrusted input: it is bounded by the given length, rejects
 * anything not exactly in the format and says which part was wrong in err.
 */
#ifndef SDM_SERVICE_NOTE_H
#define SDM_SERVICE_NOTE_H

#include <stddef.h>
#include <stdint.h>

#include "sign.h"

#define SDM_NOTE_KEYID_LEN 4
#define SDM_NOTE_ALG_ED25519 0x01
#define SDM_NOTE_NAME_MAX 255 /* bytes; longer names are refused */

typedef enum sdm_note_status {
    SDM_NOTE_OK = 0,
    SDM_NOTE_MALFORMED,  /* not a well-formed note, key or checkpoint */
    SDM_NOTE_UNVERIFIED, /* well-formed, but no known key signed it, or a known key's
                            signature does not verify */
    SDM_NOTE_NOMEM,
} sdm_note_status;

const char *sdm_note_status_str(sdm_note_status s);

/* A parsed verifier key. */
typedef struct sdm_note_verifier {
    char name[SDM_NOTE_NAME_MAX + 1];
    uint8_t keyid[SDM_NOTE_KEYID_LEN];
    uint8_t pk[SDM_PK_LEN];
} sdm_note_verifier;

/* A key name is valid when it is 1..SDM_NOTE_NAME_MAX bytes with no space, control
 * character or '+' (Go rejects those too, so our names stay portable). 1 or 0. */
int sdm_note_name_valid(const char *name);

/* keyid = first 4 bytes of SHA-256(name || 0x0A || 0x01 || pk). */
void sdm_note_keyid(const char *name, const uint8_t pk[SDM_PK_LEN],
                    uint8_t keyid[SDM_NOTE_KEYID_LEN]);

/* The checkpoint body for origin, size and root. *text is malloc'd (caller frees).
 * Refuses (SDM_NOTE_MALFORMED) an empty origin or one holding a newline. */
sdm_note_status sdm_checkpoint_format(const char *origin, uint64_t size,
                                      const uint8_t root[SDM_HASH_LEN], char **text)
    __attribute__((warn_unused_result));

/* Parses a checkpoint body of len bytes strictly: a non-empty origin line, a decimal size
 * (no sign, no leading zeros except "0", fits in 64 bits), the base64 of exactly 32 bytes,
 * then any non-empty extension lines (ignored); every line ends with "\n". On success
 * *origin is malloc'd (caller frees); on failure nothing is returned and err says why. */
sdm_note_status sdm_checkpoint_parse(const char *text, size_t len, char **origin,
                                     uint64_t *size, uint8_t root[SDM_HASH_LEN], char *err,
                                     size_t err_len) __attribute__((warn_unused_result));

/* Signs text (which must end with "\n" and be non-empty) under name with kp: *note is
 * text, "\n", and one signature line; malloc'd, caller frees. */
sdm_note_status sdm_note_sign(const sdm_keypair *kp, const char *name, const char *text,
                              size_t text_len, char **note, size_t *note_len, char *err,
                              size_t err_len) __attribute__((warn_unused_result));

/* The verifier key string for name and pk; malloc'd, caller frees. */
sdm_note_status sdm_note_verifier_key(const char *name, const uint8_t pk[SDM_PK_LEN],
                                      char **vkey) __attribute__((warn_unused_result));

/* Parses a verifier key string (NUL-terminated) and checks that its keyid matches the name
 * and key it carries. */
sdm_note_status sdm_note_verifier_parse(const char *vkey, sdm_note_verifier *v, char *err,
                                        size_t err_len) __attribute__((warn_unused_result));

/* Opens a signed note of len bytes: the text is everything up to and including the newline
 * before the last blank line; every line after it is a signature line. Signatures by keys
 * not in keys[0..n_keys) are ignored; a signature by a known key must verify; at least one
 * must. On SDM_NOTE_OK *text_len (if not NULL) is the length of the text, which starts at
 * note. */
sdm_note_status sdm_note_verify(const char *note, size_t len, const sdm_note_verifier *keys,
                                size_t n_keys, size_t *text_len, char *err, size_t err_len)
    __attribute__((warn_unused_result));

#endif /* SDM_SERVICE_NOTE_H */
