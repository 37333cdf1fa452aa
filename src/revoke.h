/*
 * Applying revocations: signed lists (from the watched directory or the
 * admin interface) and local revocations by a zone's SO.
 *
 * A revocation is one store transaction: the history rows, the objects
 * deleted (their wrapped material overwritten: the store runs with
 * secure_delete), revoked zones marked and emptied, the sequence number
 * moved on, and a change log row for each thing revoked. All of it or
 * none. Then every process is told (ev_events_announce()) and forgets
 * what was revoked at its next call (ev_sync()).
 */
#ifndef EV_REVOKE_H
#define EV_REVOKE_H

#include "common.h"
#include "pkcs11/edgevault.h"
#include "session.h"

/*
 * Apply a list file's bytes. source names where it came from (the file's
 * name, or "admin") in the history. from_dir: a file of the watched
 * directory, read once: a file already read (applied or refused) is
 * skipped with CKR_OK. *seq (may be NULL) gets the list's sequence.
 * The codes of EV_ApplyRevocationList (include/pkcs11/edgevault.h).
 * Call with no lock held.
 */
CK_RV ev_revoke_apply(const unsigned char *buf, size_t len, const char *source, int from_dir,
    CK_ULONG *seq);

/*
 * The watched directory: every file not read before, in ascending order
 * of sequence (C_Initialize, and when the watch was lost); or one file by
 * name (an inotify event). Files whose names start with '.' are skipped
 * (transports write there first, then rename). Call with no lock held.
 */
void ev_revoke_scan(void);
void ev_revoke_file(const char *name);

/*
 * EV_Revoke in a session the caller has acquired: checks the entry and
 * the SO's login, revokes in the store. The caller releases the session,
 * then announces and syncs (the session itself may end with its zone).
 */
CK_RV ev_revoke_local(ev_session *s, const EV_REVOCATION_ENTRY *e, CK_ULONG *count);

#endif
