/*
 * Unit tests of the audit writer (src/audit.c): lines written through
 * ev_audit_emit_to() into the test's temporary directory, checked here
 * with json-c and crypto_generichash (no reader library is used). The
 * checkpoint key is set up with a stand-in root (a real SoftHSMv2 root:
 * tests/integration/it_audit_key.c) and a real store.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sodium.h>

#include "audit.h"
#include "audit_event.h"
#include "config.h"
#include "module.h"
#include "root/root.h"
#include "store.h"
#include "testutil.h"

#define MAX_LINES 2000

static void
setup(void)
{
	tmpdir_make("ev_audit");
	ck_assert_int_eq(mkdir(path_of("store"), 0700), 0);
}

/* A configuration with the store in tmpdir/store, device dev, and audit_lines in [audit]. */
static ev_config *
config_dev(const char *dev, const char *audit_lines)
{
	char text[2500], err[512] = "";
	ev_config *c = NULL;
	CK_RV rv;

	snprintf(
	    text, sizeof(text),
	    "[store]\ndir = %s\n[device]\nid = %s\n[root]\nmodule = /m.so\ntoken_label = t\n"
	    "pin_env = EV_TEST_PIN\n[audit]\n%s%s\n",
	    path_of("store"), dev, strstr(audit_lines, "syslog") == NULL ? "syslog = false\n" : "",
	    audit_lines);
	write_text("edgevault.conf", text, 0600);
	rv = ev_config_load(path_of("edgevault.conf"), &c, err, sizeof(err));
	ck_assert_msg(rv == CKR_OK, "config: %s", err);
	return c;
}

static ev_config *
config_with(const char *audit_lines)
{
	return config_dev("dev-A", audit_lines);
}

static ev_audit *
writer_open(const ev_config *c)
{
	ev_audit *a = NULL;

	ck_assert_int_eq(ev_audit_open(c, &a), CKR_OK);
	ck_assert_ptr_nonnull(a);
	return a;
}

static const char *
audit_file(void)
{
	return path_of("store/" EV_AUDIT_FILE);
}

/* The file's bytes, NUL-terminated; *len without the NUL. */
static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "re");
	char *buf;
	long n;

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	ck_assert_int_ge(n, 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* The file's lines (each without its '\n', in one buffer the caller frees as lines[0]'s owner). */
typedef struct lines {
	char *buf;
	char *v[MAX_LINES];
	size_t len[MAX_LINES];
	size_t n;
	int ends_nl;
} lines;

static void
lines_read(lines *l, const char *path)
{
	size_t len, i, start = 0;

	memset(l, 0, sizeof(*l));
	l->buf = slurp(path, &len);
	for (i = 0; i < len; i++) {
		if (l->buf[i] != '\n')
			continue;
		ck_assert_uint_lt(l->n, MAX_LINES);
		l->buf[i] = '\0';
		l->v[l->n] = l->buf + start;
		l->len[l->n++] = i - start;
		start = i + 1;
	}
	l->ends_nl = start == len;
	if (start < len) {
		l->v[l->n] = l->buf + start;
		l->len[l->n++] = len - start;
	}
}

/* The number of lines (and torn bytes) in the audit file. */
static size_t
count_lines(void)
{
	lines l;

	lines_read(&l, audit_file());
	free(l.buf);
	return l.n;
}

static void
hash_hex(const char *p, size_t n, char out[65])
{
	unsigned char h[32];

	crypto_generichash(h, sizeof(h), (const unsigned char *)p, n, NULL, 0);
	sodium_bin2hex(out, 65, h, sizeof(h));
}

static json_object *
parse(const char *line)
{
	json_object *o = json_tokener_parse(line);

	ck_assert_msg(o != NULL && json_object_is_type(o, json_type_object), "not JSON: %s", line);
	return o;
}

static const char *
str_of(json_object *o, const char *name)
{
	json_object *v;

	ck_assert_msg(json_object_object_get_ex(o, name, &v), "no \"%s\" in %s", name,
		      json_object_to_json_string(o));
	ck_assert(json_object_is_type(v, json_type_string));
	return json_object_get_string(v);
}

static int64_t
int_of(json_object *o, const char *name)
{
	json_object *v;

	ck_assert_msg(json_object_object_get_ex(o, name, &v), "no \"%s\"", name);
	ck_assert(json_object_is_type(v, json_type_int));
	return json_object_get_int64(v);
}

static int
has(json_object *o, const char *name)
{
	return json_object_object_get_ex(o, name, NULL);
}

/* The members of doc/audit.md, in their order. */
static const char *const member_order[] = {"seq",    "time",	"device", "pid",  "program",
					   "event",  "outcome", "zone",	  "user", "object",
					   "reason", "detail",	"key",	  "sig",  "prev"};

/* Every member of o is one of member_order, in that order, with prev last. */
static void
order_check(json_object *o)
{
	size_t at = 0, i;

	json_object_object_foreach(o, k, v)
	{
		(void)v;
		for (i = at; i < EV_ARRAY_SIZE(member_order); i++)
			if (strcmp(k, member_order[i]) == 0)
				break;
		ck_assert_msg(i < EV_ARRAY_SIZE(member_order), "member %s out of order", k);
		at = i + 1;
	}
	ck_assert_uint_eq(at, EV_ARRAY_SIZE(member_order)); /* prev came last */
}

/*
 * Lines from..n-1 of l chain: seq first_seq, first_seq+1, ..., each prev
 * the hash of the line before (zeros before the first line of the file).
 */
static void
chain_check(const lines *l, size_t from, int64_t first_seq)
{
	char want[65];
	size_t i;

	for (i = from; i < l->n; i++) {
		json_object *o = parse(l->v[i]);

		ck_assert_uint_le(l->len[i], EV_AUDIT_LINE_MAX);
		order_check(o);
		ck_assert_int_eq(int_of(o, "seq"), first_seq + (int64_t)(i - from));
		if (i == 0)
			memset(want, '0', 64), want[64] = '\0';
		else
			hash_hex(l->v[i - 1], l->len[i - 1], want);
		ck_assert_msg(strcmp(str_of(o, "prev"), want) == 0, "line %zu: prev %s, want %s",
			      i + 1, str_of(o, "prev"), want);
		json_object_put(o);
	}
}

/* line is one counting lost lines: event, outcome "failed", zone (0: none), reason, detail "lost". */
static void
lost_check(const char *line, const char *event, int64_t zone, const char *reason, int64_t lost)
{
	json_object *o = parse(line), *dj;

	ck_assert_str_eq(str_of(o, "event"), event);
	ck_assert_str_eq(str_of(o, "outcome"), "failed");
	if (zone != 0)
		ck_assert_int_eq(int_of(o, "zone"), zone);
	else
		ck_assert(!has(o, "zone"));
	ck_assert(!has(o, "object"));
	ck_assert_str_eq(str_of(o, "reason"), reason);
	ck_assert(json_object_object_get_ex(o, "detail", &dj));
	ck_assert_int_eq(int_of(dj, "lost"), lost);
	json_object_put(o);
}

static void
emit_simple(ev_audit *a, const char *kind, int64_t zone)
{
	ev_audit_event e = EV_AUDIT_EVENT_INIT(kind, EV_AUDIT_OK);

	e.zone = zone;
	ev_audit_emit_to(a, &e);
}

#ifndef __SANITIZE_ADDRESS__
/*
 * Out of memory on demand: while alloc_fail is set, this thread's
 * malloc() and realloc() (strdup() goes through malloc()) answer NULL.
 * Not under AddressSanitizer, which owns the allocator.
 */
#define ALLOC_FAIL_TESTS 1
extern void *__libc_malloc(size_t n);
extern void *__libc_realloc(void *p, size_t n);
static _Thread_local int alloc_fail;

void *
malloc(size_t n)
{
	if (alloc_fail) {
		errno = ENOMEM;
		return NULL;
	}
	return __libc_malloc(n);
}

void *
realloc(void *p, size_t n)
{
	if (alloc_fail) {
		errno = ENOMEM;
		return NULL;
	}
	return __libc_realloc(p, n);
}
#endif

/* fdatasync() counted (the writer's calls resolve to this one in the test program). */
static atomic_int syncs;

int
fdatasync(int fd)
{
	atomic_fetch_add(&syncs, 1);
	return (int)syscall(SYS_fdatasync, fd);
}

static int
sync_count(void)
{
	return atomic_load(&syncs);
}

/* ---- lines and the chain ------------------------------------------------------------- */

START_TEST(test_chain_and_members)
{
	static const unsigned char ckid[] = {0x01, 0xab, 0xff};
	ev_config *c = config_with("fsync = always");
	ev_audit_object ob = {.handle = 42,
			      .cls = CKO_PRIVATE_KEY,
			      .key_type = CKK_EC,
			      .label = (const unsigned char *)"web/tls",
			      .label_len = 7,
			      .ckid = ckid,
			      .ckid_len = sizeof(ckid),
			      .generation = 3};
	ev_audit_detail d[] = {{.name = "method", .str = "unwrap"}, {.name = "count", .num = 7}};
	ev_audit_event e = EV_AUDIT_EVENT_INIT(EV_AUDIT_KEY_IMPORTED, EV_AUDIT_REFUSED);
	ev_audit *a = writer_open(c);
	json_object *o, *ob_j, *dj;
	struct stat st;
	lines l;
	const char *t;

	umask(022);
	e.zone = 2;
	e.user = CKU_SO;
	e.object = &ob;
	e.reason = "policy says no";
	e.detail = d;
	e.ndetail = 2;
	emit_simple(a, EV_AUDIT_ZONE_CREATED, 2);
	ev_audit_emit_to(a, &e);
	emit_simple(a, EV_AUDIT_LOGIN, 0);
	ev_audit_close(a);

	ck_assert_int_eq(stat(audit_file(), &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0640);
	lines_read(&l, audit_file());
	ck_assert(l.ends_nl);
	ck_assert_uint_eq(l.n, 3);
	chain_check(&l, 0, 1);

	o = parse(l.v[1]);
	ck_assert_str_eq(str_of(o, "device"), "dev-A");
	ck_assert_int_eq(int_of(o, "pid"), getpid());
	ck_assert_str_eq(str_of(o, "event"), "key.imported");
	ck_assert_str_eq(str_of(o, "outcome"), "refused");
	ck_assert_int_eq(int_of(o, "zone"), 2);
	ck_assert_str_eq(str_of(o, "user"), "so");
	ck_assert_str_eq(str_of(o, "reason"), "policy says no");
	t = str_of(o, "time");
	ck_assert_uint_eq(strlen(t), 27);
	ck_assert(t[4] == '-' && t[10] == 'T' && t[19] == '.' && t[26] == 'Z');
	ck_assert(json_object_object_get_ex(o, "object", &ob_j));
	ck_assert_int_eq(int_of(ob_j, "handle"), 42);
	ck_assert_str_eq(str_of(ob_j, "class"), "private");
	ck_assert_str_eq(str_of(ob_j, "key_type"), "ec");
	ck_assert_str_eq(str_of(ob_j, "label"), "web/tls");
	ck_assert_str_eq(str_of(ob_j, "id"), "01abff");
	ck_assert_int_eq(int_of(ob_j, "generation"), 3);
	ck_assert(!has(ob_j, "label_cut"));
	ck_assert(json_object_object_get_ex(o, "detail", &dj));
	ck_assert_str_eq(str_of(dj, "method"), "unwrap");
	ck_assert_int_eq(int_of(dj, "count"), 7);
	ck_assert(!has(o, "key") && !has(o, "sig"));
	json_object_put(o);

	/* Optional members absent when not given; compact output, no blanks. */
	o = parse(l.v[2]);
	ck_assert(!has(o, "zone") && !has(o, "user") && !has(o, "object") && !has(o, "reason") &&
		  !has(o, "detail"));
	json_object_put(o);
	ck_assert_ptr_null(strstr(l.v[0], ": "));
	ck_assert_ptr_null(strstr(l.v[0], ", "));
	free(l.buf);

	/* A second writer (a later process) goes on with the chain. */
	a = writer_open(c);
	emit_simple(a, EV_AUDIT_LOGIN, 1);
	ev_audit_close(a);
	lines_read(&l, audit_file());
	ck_assert_uint_eq(l.n, 4);
	chain_check(&l, 0, 1);
	free(l.buf);
	ev_config_free(c);
}
END_TEST

START_TEST(test_path)
{
	ev_config *c = config_with("");
	char buf[512], small[8], line[600];

	ck_assert_str_eq(ev_audit_path(c, buf, sizeof(buf)), audit_file());
	ck_assert_ptr_null(ev_audit_path(c, small, sizeof(small)));
	ev_config_free(c);
	snprintf(line, sizeof(line), "file = %s", path_of("elsewhere.log"));
	c = config_with(line);
	ck_assert_str_eq(ev_audit_path(c, buf, sizeof(buf)), path_of("elsewhere.log"));
	ev_config_free(c);
}
END_TEST

#define CHILDREN 8
#define PER_CHILD 60

/* Several processes, each with its own writer, at once: every line, one chain. */
START_TEST(test_processes_at_once)
{
	ev_config *c = config_with("fsync = never");
	int seen[CHILDREN][PER_CHILD] = {{0}};
	pid_t pids[CHILDREN];
	int status, i, j;
	lines l;

	for (i = 0; i < CHILDREN; i++) {
		pids[i] = fork();
		ck_assert_int_ge(pids[i], 0);
		if (pids[i] == 0) {
			ev_audit *a = NULL;

			if (ev_audit_open(c, &a) != CKR_OK)
				_exit(1);
			for (j = 0; j < PER_CHILD; j++) {
				ev_audit_detail d[] = {{.name = "child", .num = i},
						       {.name = "n", .num = j}};
				ev_audit_event e = EV_AUDIT_EVENT_INIT(EV_AUDIT_LOGIN, EV_AUDIT_OK);

				e.detail = d;
				e.ndetail = 2;
				ev_audit_emit_to(a, &e);
			}
			ev_audit_close(a);
			_exit(0);
		}
	}
	for (i = 0; i < CHILDREN; i++) {
		ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
		ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	lines_read(&l, audit_file());
	ck_assert(l.ends_nl);
	ck_assert_uint_eq(l.n, CHILDREN * PER_CHILD);
	chain_check(&l, 0, 1);
	for (size_t k = 0; k < l.n; k++) {
		json_object *o = parse(l.v[k]), *d;
		int64_t ci, n;

		ck_assert(json_object_object_get_ex(o, "detail", &d));
		ci = int_of(d, "child");
		n = int_of(d, "n");
		ck_assert(ci >= 0 && ci < CHILDREN && n >= 0 && n < PER_CHILD);
		ck_assert_int_eq(seen[ci][n], 0);
		seen[ci][n] = 1;
		json_object_put(o);
	}
	free(l.buf);
	ev_config_free(c);
}
END_TEST

/* Threads of one process share a writer: its mutex keeps them apart. */
static void *
thread_emit(void *arg)
{
	for (int j = 0; j < PER_CHILD; j++)
		emit_simple(arg, EV_AUDIT_LOGIN, j + 1);
	return NULL;
}

START_TEST(test_threads_at_once)
{
	ev_config *c = config_with("fsync = never");
	ev_audit *a = writer_open(c);
	pthread_t t[4];
	lines l;
	int i;

	for (i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, thread_emit, a), 0);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
	ev_audit_close(a);
	lines_read(&l, audit_file());
	ck_assert_uint_eq(l.n, 4 * PER_CHILD);
	chain_check(&l, 0, 1);
	free(l.buf);
	ev_config_free(c);
}
END_TEST

/* A line cut short by a crash: '\n', audit.torn chained to the cut bytes, then the event. */
START_TEST(test_torn_tail)
{
	static const char cut[] = "{\"seq\":3,\"time\":\"2026-";
	ev_config *c = config_with("fsync = never");
	ev_audit *a = writer_open(c);
	char want[65];
	json_object *o, *d;
	lines l;
	int fd;

	emit_simple(a, EV_AUDIT_LOGIN, 1);
	emit_simple(a, EV_AUDIT_LOGIN, 1);
	/* Another "process" crashed mid-line; this writer's cache must notice the size changed. */
	fd = open(audit_file(), O_WRONLY | O_APPEND);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, cut, strlen(cut)), (ssize_t)strlen(cut));
	close(fd);
	emit_simple(a, EV_AUDIT_ZONE_CREATED, 5);
	ev_audit_close(a);

	lines_read(&l, audit_file());
	ck_assert(l.ends_nl);
	ck_assert_uint_eq(l.n, 5);
	ck_assert_str_eq(l.v[2], cut);
	l.n = 2;
	chain_check(&l, 0, 1);
	l.n = 5;
	o = parse(l.v[3]);
	ck_assert_str_eq(str_of(o, "event"), "audit.torn");
	ck_assert_str_eq(str_of(o, "outcome"), "failed");
	ck_assert_int_eq(int_of(o, "seq"), 3);
	hash_hex(cut, strlen(cut), want);
	ck_assert_str_eq(str_of(o, "prev"), want);
	ck_assert(json_object_object_get_ex(o, "detail", &d));
	ck_assert_int_eq(int_of(d, "bytes"), (int64_t)strlen(cut));
	json_object_put(o);
	chain_check(&l, 3, 3);
	o = parse(l.v[4]);
	ck_assert_str_eq(str_of(o, "event"), "zone.created");
	json_object_put(o);
	free(l.buf);

	/* A whole last line that is not ours (no seq): torn too, no '\n' added. */
	fd = open(audit_file(), O_WRONLY | O_APPEND);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "garbage\n", 8), 8);
	close(fd);
	a = writer_open(c);
	emit_simple(a, EV_AUDIT_LOGIN, 1);
	ev_audit_close(a);
	lines_read(&l, audit_file());
	ck_assert_uint_eq(l.n, 8);
	ck_assert_str_eq(l.v[5], "garbage");
	o = parse(l.v[6]);
	ck_assert_str_eq(str_of(o, "event"), "audit.torn");
	ck_assert_int_eq(int_of(o, "seq"), 5);
	hash_hex("garbage", 7, want);
	ck_assert_str_eq(str_of(o, "prev"), want);
	json_object_put(o);
	chain_check(&l, 6, 5);
	free(l.buf);
	ev_config_free(c);
}
END_TEST

/* Torn bytes with no whole line before them: the torn line is seq 1. */
START_TEST(test_torn_only)
{
	ev_config *c = config_with("");
	ev_audit *a;
	char want[65];
	json_object *o;
	lines l;

	write_text("store/" EV_AUDIT_FILE, "{\"se", 0640);
	a = writer_open(c);
	emit_simple(a, EV_AUDIT_LOGIN, 1);
	ev_audit_close(a);
	lines_read(&l, audit_file());
	ck_assert_uint_eq(l.n, 3);
	o = parse(l.v[1]);
	ck_assert_int_eq(int_of(o, "seq"), 1);
	hash_hex("{\"se", 4, want);
	ck_assert_str_eq(str_of(o, "prev"), want);
	json_object_put(o);
	chain_check(&l, 2, 2);
	free(l.buf);
	ev_config_free(c);
}
END_TEST

static json_object *
last_object(lines *l, json_object **line)
{
	json_object *ob;

	lines_read(l, audit_file());
	*line = parse(l->v[l->n - 1]);
	ck_assert(json_object_object_get_ex(*line, "object", &ob));
	return ob;
}

static void
emit_label(ev_audit *a, const void *label, size_t len, const char *reason)
{
	ev_audit_object ob = {.cls = CK_UNAVAILABLE_INFORMATION,
			      .key_type = CK_UNAVAILABLE_INFORMATION,
			      .label = label,
			      .label_len = len};
	ev_audit_event e = EV_AUDIT_EVENT_INIT(EV_AUDIT_KEY_GENERATED, EV_AUDIT_OK);

	e.object = &ob;
	e.reason = reason;
	ev_audit_emit_to(a, &e);
}

START_TEST(test_labels)
{
	ev_config *c = config_with("");
	ev_audit *a = writer_open(c);
	unsigned char big[400], bad[300];
	char reason[1000];
	json_object *line, *ob;
	lines l;

	/* Longer than 256 bytes: cut, label_cut. */
	memset(big, 'x', sizeof(big));
	emit_label(a, big, 300, NULL);
	ob = last_object(&l, &line);
	ck_assert_uint_eq(strlen(str_of(ob, "label")), EV_AUDIT_LABEL_MAX);
	ck_assert(has(ob, "label_cut"));
	ck_assert(!has(ob, "class") && !has(ob, "key_type") && !has(ob, "handle"));
	json_object_put(line);
	free(l.buf);

	/* UTF-8 is cut between characters: 200 two-byte characters keep 128. */
	for (size_t i = 0; i < 400; i += 2)
		big[i] = 0xc3, big[i + 1] = 0xa9;
	emit_label(a, big, 400, NULL);
	ob = last_object(&l, &line);
	ck_assert_uint_eq(strlen(str_of(ob, "label")), 256);
	ck_assert(has(ob, "label_cut"));
	json_object_put(line);
	free(l.buf);
	emit_label(a, big, 255, NULL); /* a character cut in two is not UTF-8: hex */
	ob = last_object(&l, &line);
	ck_assert(strncmp(str_of(ob, "label"), "hex:c3a9", 8) == 0);
	ck_assert_uint_eq(strlen(str_of(ob, "label")), 4 + 2 * 255);
	ck_assert(!has(ob, "label_cut"));
	json_object_put(line);
	free(l.buf);

	/* Not UTF-8: hex, cut at 256 bytes too. */
	emit_label(a,
		   "\xff\xfe"
		   "ab",
		   4, NULL);
	ob = last_object(&l, &line);
	ck_assert_str_eq(str_of(ob, "label"), "hex:fffe6162");
	json_object_put(line);
	free(l.buf);
	memset(bad, 0xff, sizeof(bad));
	emit_label(a, bad, sizeof(bad), NULL);
	ob = last_object(&l, &line);
	ck_assert_uint_eq(strlen(str_of(ob, "label")), 4 + 2 * EV_AUDIT_LABEL_MAX);
	ck_assert(has(ob, "label_cut"));
	json_object_put(line);
	free(l.buf);

	/* A reason is cut at 512 bytes; control characters escaped, the line still fits. */
	memset(reason, '\x01', sizeof(reason) - 1);
	reason[sizeof(reason) - 1] = '\0';
	emit_label(a, bad, sizeof(bad), reason);
	lines_read(&l, audit_file());
	line = parse(l.v[l.n - 1]);
	ck_assert_uint_eq(strlen(str_of(line, "reason")), EV_AUDIT_REASON_MAX);
	json_object_put(line);
	chain_check(&l, 0, 1);
	free(l.buf);
	ev_audit_close(a);
	ev_config_free(c);
}
END_TEST

START_TEST(test_disabled)
{
	ev_config *c = config_with("enabled = false");
	ev_audit *a = writer_open(c);
	struct stat st;

	emit_simple(a, EV_AUDIT_LOGIN, 1);
	ck_assert_int_eq(ev_audit_checkpoint(a), CKR_FUNCTION_REJECTED);
	ev_audit_close(a);
	ck_assert_int_eq(stat(audit_file(), &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	ev_audit_close(NULL);
	ev_audit_abandon(NULL);
	ev_audit_emit_to(NULL, NULL);
	ev_config_free(c);
}
END_TEST

/* A file that cannot be opened or written: nothing fails, nothing crashes. */
START_TEST(test_unwritable)
{
	char line[512];
	ev_config *c;
	ev_audit *a;

	snprintf(line, sizeof(line), "file = %s", path_of("missing/dir/audit.log"));
	c = config_with(line);
	a = writer_open(c);
	emit_simple(a, EV_AUDIT_LOGIN, 1);
	emit_simple(a, EV_AUDIT_LOGIN, 1);
	ck_assert_int_eq(ev_audit_checkpoint(a), CKR_FUNCTION_REJECTED); /* no key */
	ev_audit_close(a);
	ev_config_free(c);

	/* Opens, but every write fails (ENOSPC). */
	c = config_with("file = /dev/full");
	a = writer_open(c);
	emit_simple(a, EV_AUDIT_LOGIN, 1);
	emit_simple(a, EV_AUDIT_LOGIN, 1);
	ev_audit_close(a);
	ev_config_free(c);
}
END_TEST

START_TEST(test_hold)
{
	ev_config *c = config_with("fsync = always");
	ev_audit *a = writer_open(c);
	ev_module m = {.pid = getpid(), .audit = a};
	lines l;

	/* The release acts on the module's writer. */
	ev_mod = &m;
	atomic_store(&syncs, 0);
	emit_simple(a, EV_AUDIT_KEY_REVOKED, 1);
	ck_assert_int_eq(sync_count(), 1); /* fsync = always: after each line */
	/* Lines are written as usual while held (the sync waits); nested holds count. */
	ev_audit_hold();
	ev_audit_hold();
	emit_simple(a, EV_AUDIT_KEY_REVOKED, 1);
	ev_audit_release();
	emit_simple(a, EV_AUDIT_KEY_REVOKED, 1);
	ck_assert_uint_eq(count_lines(), 3);
	ck_assert_int_eq(sync_count(), 1);
	ev_audit_release(); /* the last: one sync for both */
	ck_assert_int_eq(sync_count(), 2);
	ev_audit_release(); /* one too many: ignored */
	ck_assert_int_eq(sync_count(), 2);
	emit_simple(a, EV_AUDIT_KEY_REVOKED, 1);
	ck_assert_int_eq(sync_count(), 3);
	ev_audit_hold();
	ev_audit_release(); /* nothing written: no sync */
	ck_assert_int_eq(sync_count(), 3);
	ev_mod = NULL;
	ev_audit_close(a);
	ck_assert_int_eq(sync_count(), 3); /* nothing left to sync */
	lines_read(&l, audit_file());
	ck_assert_uint_eq(l.n, 4);
	chain_check(&l, 0, 1);
	free(l.buf);
	ev_config_free(c);
}
END_TEST

/* A line with sync_later waits for the watcher's tick, only while a watcher runs. */
START_TEST(test_sync_later)
{
	ev_config *c = config_with("fsync = always");
	ev_audit *a = writer_open(c);
	ev_audit_event e = EV_AUDIT_EVENT_INIT(EV_AUDIT_LOGIN, EV_AUDIT_OK);
	lines l;

	e.zone = 1;
	e.sync_later = 1;
	atomic_store(&syncs, 0);
	/* No watcher: synced at once like any line. */
	ev_audit_emit_to(a, &e);
	ck_assert_int_eq(sync_count(), 1);
	ev_audit_watched(a, 1);
	ev_audit_emit_to(a, &e);
	ev_audit_emit_to(a, &e);
	ck_assert_int_eq(sync_count(), 1);
	ev_audit_sync_later(a); /* the tick: one sync for both */
	ck_assert_int_eq(sync_count(), 2);
	ev_audit_sync_later(a); /* nothing written since: no sync */
	ck_assert_int_eq(sync_count(), 2);
	/* A line synced at once covers the waiting ones. */
	ev_audit_emit_to(a, &e);
	emit_simple(a, EV_AUDIT_KEY_REVOKED, 1);
	ck_assert_int_eq(sync_count(), 3);
	ev_audit_sync_later(a);
	ck_assert_int_eq(sync_count(), 3);
	/* Waiting at close: C_Finalize syncs it. */
	ev_audit_emit_to(a, &e);
	ck_assert_int_eq(sync_count(), 3);
	ev_audit_watched(a, 0);
	ev_audit_close(a);
	ck_assert_int_eq(sync_count(), 4);
	lines_read(&l, audit_file());
	ck_assert_uint_eq(l.n, 6);
	chain_check(&l, 0, 1);
	free(l.buf);
	ev_config_free(c);
}
END_TEST

/* ---- checkpoints ---------------------------------------------------------------------- */

/*
 * A stand-in root: "seals" by prefixing the associated data's hash, so a
 * blob opens only with the same associated data. Enough to drive the key
 * setup; the real roots are in tests/integration/it_audit_key.c.
 */
static int fake_fail;
/* When set: at each unseal, whether this second connection could take the write lock. */
static ev_store *fake_probe;
static CK_RV fake_probe_rv;

static CK_RV
fake_seal(ev_root *r, const unsigned char *aad, size_t aadlen, const ev_secret *plain,
	  const ev_seal_opts *opts, unsigned char **blob, size_t *bloblen)
{
	(void)r;
	(void)opts;
	if (fake_fail)
		return CKR_DEVICE_ERROR;
	*blob = malloc(32 + plain->len);
	ck_assert_ptr_nonnull(*blob);
	crypto_generichash(*blob, 32, aad, aadlen, NULL, 0);
	memcpy(*blob + 32, plain->data, plain->len);
	*bloblen = 32 + plain->len;
	return CKR_OK;
}

static CK_RV
fake_unseal(ev_root *r, const unsigned char *aad, size_t aadlen, const unsigned char *blob,
	    size_t bloblen, ev_unseal_opts *opts, ev_secret **plain)
{
	unsigned char h[32];

	(void)r;
	(void)opts;
	if (fake_fail)
		return CKR_DEVICE_ERROR;
	if (fake_probe != NULL) {
		fake_probe_rv = ev_store_begin(fake_probe);
		if (fake_probe_rv == CKR_OK)
			ck_assert_int_eq(ev_store_rollback(fake_probe), CKR_OK);
	}
	crypto_generichash(h, 32, aad, aadlen, NULL, 0);
	if (bloblen < 32 || memcmp(h, blob, 32) != 0)
		return CKR_ENCRYPTED_DATA_INVALID;
	*plain = ev_secret_dup(blob + 32, bloblen - 32);
	return *plain != NULL ? CKR_OK : CKR_HOST_MEMORY;
}

static const struct ev_root_ops fake_ops = {
    .name = "fake", .seal = fake_seal, .unseal = fake_unseal};
static ev_root fake_root = {.ops = &fake_ops};

static ev_store *
store_open(void)
{
	ev_store *s = NULL;
	char err[256] = "";

	ck_assert_msg(ev_store_open(path_of("store"), EV_STORE_CREATE, &s, err, sizeof(err)) ==
			  CKR_OK,
		      "store: %s", err);
	return s;
}

/* The checkpoint line o (line text, its predecessor) verifies against pk, as doc/audit.md says. */
static void
sig_check(const char *line, const unsigned char pk[32])
{
	unsigned char msg[200], sig[64], prev[32], key[32];
	json_object *o = parse(line);
	const char *device = str_of(o, "device");
	int64_t seq = int_of(o, "seq");
	size_t m = 0, n;

	ck_assert_str_eq(str_of(o, "event"), "audit.checkpoint");
	ck_assert_str_eq(str_of(o, "outcome"), "ok");
	ck_assert_int_eq(sodium_base642bin(key, sizeof(key), str_of(o, "key"), 44, NULL, &n, NULL,
					   sodium_base64_VARIANT_ORIGINAL),
			 0);
	ck_assert_uint_eq(n, 32);
	ck_assert_int_eq(memcmp(key, pk, 32), 0);
	ck_assert_uint_eq(strlen(str_of(o, "sig")), 88);
	ck_assert_int_eq(sodium_base642bin(sig, sizeof(sig), str_of(o, "sig"), 88, NULL, &n, NULL,
					   sodium_base64_VARIANT_ORIGINAL),
			 0);
	ck_assert_int_eq(sodium_hex2bin(prev, 32, str_of(o, "prev"), 64, NULL, &n, NULL), 0);
	memcpy(msg, EV_AUDIT_SIG_PREFIX, strlen(EV_AUDIT_SIG_PREFIX));
	m = strlen(EV_AUDIT_SIG_PREFIX);
	for (int i = 7; i >= 0; i--)
		msg[m++] = (unsigned char)((uint64_t)seq >> (8 * i));
	memcpy(msg + m, prev, 32);
	m += 32;
	memcpy(msg + m, device, strlen(device));
	m += strlen(device);
	ck_assert_int_eq(crypto_sign_verify_detached(sig, msg, m, pk), 0);
	/* One bit changed in what is signed: refused. */
	msg[m - 1] ^= 1;
	ck_assert_int_ne(crypto_sign_verify_detached(sig, msg, m, pk), 0);
	json_object_put(o);
}

/* <file>.head names seq and the hash of line index seq-1. */
static void
head_check(const lines *l, int64_t seq)
{
	char path[600], want[65];
	size_t len;
	char *text;
	json_object *o;

	snprintf(path, sizeof(path), "%s.head", audit_file());
	text = slurp(path, &len);
	ck_assert(len > 0 && text[len - 1] == '\n');
	o = parse(text);
	ck_assert_int_eq(int_of(o, "seq"), seq);
	hash_hex(l->v[seq - 1], l->len[seq - 1], want);
	ck_assert_str_eq(str_of(o, "hash"), want);
	json_object_put(o);
	free(text);
}

static void
public_key(ev_store *s, unsigned char pk[32])
{
	unsigned char *v = NULL;
	size_t n = 0;

	ck_assert_int_eq(ev_store_meta_get(s, EV_META_AUDIT_KEY_PUBLIC, &v, &n), CKR_OK);
	ck_assert_uint_eq(n, 32);
	memcpy(pk, v, 32);
	free(v);
}

/* A configuration, the store and a writer holding the checkpoint key. */
typedef struct keyed {
	ev_config *c;
	ev_store *s;
	ev_audit *a;
} keyed;

static void
keyed_open(keyed *k, const char *audit_lines)
{
	k->c = config_with(audit_lines);
	k->s = store_open();
	k->a = writer_open(k->c);
	ck_assert_int_eq(ev_audit_key_setup(k->a, &fake_root, k->s), CKR_OK);
}

static void
keyed_close(keyed *k)
{
	ev_audit_close(k->a);
	ev_store_close(k->s);
	ev_config_free(k->c);
}

START_TEST(test_checkpoints)
{
	ev_config *c = config_with("checkpoint_lines = 5\ncheckpoint_interval = 0");
	ev_store *s = store_open();
	ev_audit *a = writer_open(c);
	unsigned char pk[32];
	json_object *o;
	lines l;
	int i;

	/* No key yet: no checkpoint, and asking for one is rejected. */
	emit_simple(a, EV_AUDIT_LOGIN, 1);
	ck_assert_int_eq(ev_audit_checkpoint(a), CKR_FUNCTION_REJECTED);
	ck_assert(!ev_audit_has_key(a));
	ck_assert_int_eq(ev_audit_key_setup(a, &fake_root, s), CKR_OK);
	ck_assert(ev_audit_has_key(a));
	public_key(s, pk);
	for (i = 0; i < 4; i++)
		emit_simple(a, EV_AUDIT_LOGIN, 1);
	/* Line 5 reached checkpoint_lines: line 6 is a checkpoint. */
	lines_read(&l, audit_file());
	ck_assert_uint_eq(l.n, 6);
	chain_check(&l, 0, 1);
	sig_check(l.v[5], pk);
	head_check(&l, 6);
	free(l.buf);

	/* Five more lines after it, then the next. */
	for (i = 0; i < 4; i++)
		emit_simple(a, EV_AUDIT_LOGIN, 1);
	ck_assert_uint_eq(count_lines(), 10);
	emit_simple(a, EV_AUDIT_LOGIN, 1);
	lines_read(&l, audit_file());
	ck_assert_uint_eq(l.n, 12);
	sig_check(l.v[11], pk);
	head_check(&l, 12);
	free(l.buf);

	/* Asked for with nothing since: none added. */
	ck_assert_int_eq(ev_audit_checkpoint(a), CKR_OK);
	ck_assert_uint_eq(count_lines(), 12);
	emit_simple(a, EV_AUDIT_LOGIN, 1);
	ck_assert_int_eq(ev_audit_checkpoint(a), CKR_OK);
	lines_read(&l, audit_file());
	ck_assert_uint_eq(l.n, 14);
	sig_check(l.v[13], pk);
	head_check(&l, 14);
	free(l.buf);

	/* At close, over the lines this process wrote since the last. */
	emit_simple(a, EV_AUDIT_LOGIN, 1);
	ev_audit_close(a);
	lines_read(&l, audit_file());
	ck_assert_uint_eq(l.n, 16);
	chain_check(&l, 0, 1);
	sig_check(l.v[15], pk);
	head_check(&l, 16);
	o = parse(l.v[15]);
	ck_assert_int_eq(int_of(o, "pid"), getpid());
	json_object_put(o);
	free(l.buf);

	/* A writer that wrote nothing adds no checkpoint at close. */
	a = writer_open(c);
	ck_assert_int_eq(ev_audit_key_setup(a, &fake_root, s), CKR_OK);
	ev_audit_close(a);
	ck_assert_uint_eq(count_lines(), 16);
	ev_store_close(s);
	ev_config_free(c);
}
END_TEST

/* checkpoint_interval: the next line after it passed since the head was written. */
START_TEST(test_checkpoint_interval)
{
	struct timespec old[2] = {{.tv_sec = 1000}, {.tv_sec = 1000}};
	char head[600];
	keyed k;

	keyed_open(&k, "checkpoint_lines = 1000\ncheckpoint_interval = 3600");
	emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	ck_assert_int_eq(ev_audit_checkpoint(k.a), CKR_OK);
	emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	ck_assert_uint_eq(count_lines(), 3); /* the head is new: not due */
	snprintf(head, sizeof(head), "%s.head", audit_file());
	ck_assert_int_eq(utimensat(AT_FDCWD, head, old, 0), 0);
	emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	ck_assert_uint_eq(count_lines(), 5);
	keyed_close(&k);
}
END_TEST

/* The watcher's call: the interval seals the lines of an idle device. */
START_TEST(test_checkpoint_if_due)
{
	struct timespec old[2] = {{.tv_sec = 1000}, {.tv_sec = 1000}};
	char head[600];
	ev_config *c;
	ev_audit *a;
	lines l;
	keyed k;

	ev_audit_checkpoint_if_due(NULL); /* a no-op */
	keyed_open(&k, "checkpoint_lines = 1000\ncheckpoint_interval = 3600");
	emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	ck_assert_int_eq(ev_audit_checkpoint(k.a), CKR_OK);
	emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	ev_audit_checkpoint_if_due(k.a);
	ck_assert_uint_eq(count_lines(), 3); /* the head is new: not due */
	snprintf(head, sizeof(head), "%s.head", audit_file());
	ck_assert_int_eq(utimensat(AT_FDCWD, head, old, 0), 0);
	ev_audit_checkpoint_if_due(k.a);
	lines_read(&l, audit_file());
	ck_assert_uint_eq(l.n, 4);
	chain_check(&l, 0, 1);
	head_check(&l, 4);
	free(l.buf);
	/* Nothing since the checkpoint: none added, even when the interval passed. */
	ck_assert_int_eq(utimensat(AT_FDCWD, head, old, 0), 0);
	ev_audit_checkpoint_if_due(k.a);
	ck_assert_uint_eq(count_lines(), 4);

	/* A writer without the key signs nothing. */
	c = config_with("checkpoint_lines = 1000\ncheckpoint_interval = 3600");
	a = writer_open(c);
	emit_simple(a, EV_AUDIT_LOGIN, 1);
	ck_assert_int_eq(utimensat(AT_FDCWD, head, old, 0), 0);
	ev_audit_checkpoint_if_due(a);
	ck_assert_uint_eq(count_lines(), 5);
	ev_audit_close(a);
	ev_config_free(c);
	keyed_close(&k);
	ck_assert_uint_eq(count_lines(), 5); /* k wrote nothing since its checkpoint */
}
END_TEST

/* A head ahead of the file: truncated; no checkpoint is written over it. */
START_TEST(test_truncated_no_checkpoint)
{
	keyed k;

	keyed_open(&k, "checkpoint_lines = 2");
	write_text("store/" EV_AUDIT_FILE ".head", "{\"seq\":50,\"hash\":\"00\"}\n", 0640);
	for (int i = 0; i < 3; i++)
		emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	ck_assert_int_eq(ev_audit_checkpoint(k.a), CKR_DEVICE_ERROR);
	keyed_close(&k);
	ck_assert_uint_eq(count_lines(), 3);
}
END_TEST

/*
 * The file cut back before the head's checkpoint and written again past
 * it (lines that chain): the head's line is not there, so nothing is
 * signed over what was written.
 */
START_TEST(test_cut_and_regrown)
{
	ev_audit *other;
	size_t len;
	lines l;
	keyed k;

	keyed_open(&k, "checkpoint_lines = 1000\ncheckpoint_interval = 0");
	emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	ck_assert_int_eq(ev_audit_checkpoint(k.a), CKR_OK);
	emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	ck_assert_int_eq(ev_audit_checkpoint(k.a), CKR_OK); /* checks the head's line 2: there */
	lines_read(&l, audit_file());
	ck_assert_uint_eq(l.n, 4);
	head_check(&l, 4);
	/* Cut back to line 3, then lines 4..6 chained by a writer with no key. */
	len = (size_t)(l.v[3] - l.buf);
	free(l.buf);
	ck_assert_int_eq(truncate(audit_file(), (off_t)len), 0);
	other = writer_open(k.c);
	for (int i = 0; i < 3; i++)
		emit_simple(other, EV_AUDIT_LOGIN, 2);
	ev_audit_close(other);
	lines_read(&l, audit_file());
	ck_assert_uint_eq(l.n, 6);
	chain_check(&l, 0, 1);
	free(l.buf);
	ck_assert_int_eq(ev_audit_checkpoint(k.a), CKR_DEVICE_ERROR);
	emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	ck_assert_int_eq(ev_audit_checkpoint(k.a), CKR_DEVICE_ERROR);
	keyed_close(&k); /* nor at close */
	lines_read(&l, audit_file());
	ck_assert_uint_eq(l.n, 7);
	for (size_t i = 3; i < l.n; i++)
		ck_assert_ptr_null(strstr(l.v[i], EV_AUDIT_CHECKPOINT));
	free(l.buf);
}
END_TEST

/*
 * The head removed after checkpoints (the file may have been cut back and
 * re-chained since): the writer finds a checkpoint in the file and signs
 * nothing more. Without any checkpoint in the file, a missing head is a
 * new trail and the first checkpoint is written.
 */
START_TEST(test_head_removed)
{
	char head[600];
	lines l;
	keyed k;

	keyed_open(&k, "checkpoint_lines = 2\ncheckpoint_interval = 0");
	snprintf(head, sizeof(head), "%s.head", audit_file());
	emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	ck_assert_int_eq(unlink(head), -1); /* none yet */
	emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	ck_assert_uint_eq(count_lines(), 3); /* 1, 2, checkpoint 3 */
	ck_assert_int_eq(unlink(head), 0);
	for (int i = 0; i < 4; i++)
		emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	ck_assert_int_eq(ev_audit_checkpoint(k.a), CKR_DEVICE_ERROR);
	keyed_close(&k); /* nor at close */
	lines_read(&l, audit_file());
	ck_assert_uint_eq(l.n, 7);
	chain_check(&l, 0, 1);
	ck_assert_ptr_nonnull(strstr(l.v[2], EV_AUDIT_CHECKPOINT));
	for (size_t i = 3; i < l.n; i++)
		ck_assert_ptr_null(strstr(l.v[i], EV_AUDIT_CHECKPOINT));
	free(l.buf);
	ck_assert_int_eq(access(head, F_OK), -1);
}
END_TEST

/*
 * The head cannot be written (a directory stands at its name): the
 * checkpoint is reported failed, and the writers that follow find it in
 * the file without a head and write no more, rather than one after every
 * line.
 */
START_TEST(test_head_unwritable)
{
	char head[600];
	keyed k;

	keyed_open(&k, "checkpoint_lines = 1\ncheckpoint_interval = 0");
	snprintf(head, sizeof(head), "%s.head", audit_file());
	ck_assert_int_eq(mkdir(head, 0700), 0);
	emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	ck_assert_uint_eq(count_lines(), 2); /* the line and its checkpoint; the head failed */
	for (int i = 0; i < 3; i++)
		emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	ck_assert_int_eq(ev_audit_checkpoint(k.a), CKR_DEVICE_ERROR);
	keyed_close(&k);
	ck_assert_uint_eq(count_lines(), 5);
	ck_assert_int_eq(rmdir(head), 0);
}
END_TEST

/*
 * The head cannot be replaced (its temporary name is taken), the old one
 * stays: the failed checkpoint's line is in the file, and the next one is
 * due counting from it, not from the old head (or every line would write
 * one). Once the head can be written again, it names the new checkpoint.
 */
START_TEST(test_head_stale)
{
	char tmp[700];
	lines l;
	keyed k;

	keyed_open(&k, "checkpoint_lines = 2\ncheckpoint_interval = 0");
	emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	ck_assert_uint_eq(count_lines(), 3); /* 1, 2, checkpoint 3 and its head */
	snprintf(tmp, sizeof(tmp), "%s.head.%ld.tmp", audit_file(), (long)getpid());
	ck_assert_int_eq(mkdir(tmp, 0700), 0);
	emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	ck_assert_uint_eq(count_lines(), 6); /* 4, 5, checkpoint 6: its head failed */
	emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	ck_assert_uint_eq(count_lines(), 7); /* one line since 6: not due */
	ck_assert_int_eq(rmdir(tmp), 0);
	emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	ck_assert_uint_eq(count_lines(), 9); /* two since 6: checkpoint 9, its head written */
	lines_read(&l, audit_file());
	chain_check(&l, 0, 1);
	head_check(&l, 9);
	free(l.buf);
	keyed_close(&k);
}
END_TEST

/* Symlinks at the file's name or the head's temporary name are not followed. */
START_TEST(test_symlinks)
{
	char tmp[700], head[600];
	struct stat st;
	ev_audit *a;
	lines l;
	keyed k;

	ck_assert_int_eq(symlink(path_of("victim"), audit_file()), 0);
	k.c = config_with("checkpoint_lines = 1000");
	a = writer_open(k.c);
	emit_simple(a, EV_AUDIT_LOGIN, 1);
	ev_audit_close(a);
	ck_assert_int_ne(lstat(path_of("victim"), &st), 0); /* not created through the link */
	ck_assert_int_eq(unlink(audit_file()), 0);
	ev_config_free(k.c);

	snprintf(head, sizeof(head), "%s.head", audit_file());
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", head, (long)getpid());
	write_text("victim", "", 0600);
	ck_assert_int_eq(symlink(path_of("victim"), tmp), 0);
	keyed_open(&k, "checkpoint_lines = 1000");
	emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	ck_assert_int_eq(ev_audit_checkpoint(k.a), CKR_OK);
	keyed_close(&k);
	ck_assert_int_eq(stat(path_of("victim"), &st), 0);
	ck_assert_int_eq(st.st_size, 0);
	ck_assert_int_eq(lstat(head, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	lines_read(&l, audit_file());
	head_check(&l, 2);
	free(l.buf);
}
END_TEST

/*
 * Another process holding the file's lock (a stopped writer, a child
 * that inherited it): the wait is bounded, the line goes to syslog only,
 * and lines go to the file again once it is released.
 */
START_TEST(test_lock_held)
{
	int ready[2], go[2], status, fd;
	struct timespec t0, t1;
	ev_config *c = config_with("checkpoint_lines = 1000");
	ev_audit *a = writer_open(c);
	json_object *o;
	double secs;
	pid_t pid;
	char ch;
	lines l;

	emit_simple(a, EV_AUDIT_LOGIN, 1);
	ck_assert_int_eq(pipe(ready), 0);
	ck_assert_int_eq(pipe(go), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		fd = open(audit_file(), O_RDWR | O_APPEND);
		if (fd < 0 || flock(fd, LOCK_EX) != 0 || write(ready[1], "r", 1) != 1 ||
		    read(go[0], &ch, 1) != 1)
			_exit(1);
		_exit(0);
	}
	ck_assert_int_eq(read(ready[0], &ch, 1), 1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	emit_simple(a, EV_AUDIT_LOGIN, 2);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	ck_assert_msg(secs >= 4.0 && secs < 8.0, "waited %.2f s", secs);
	/* The process waited once: the next caller tries without waiting. */
	emit_simple(a, EV_AUDIT_LOGIN, 2);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	secs = (double)(t0.tv_sec - t1.tv_sec) + (double)(t0.tv_nsec - t1.tv_nsec) / 1e9;
	ck_assert_msg(secs < 1.0, "waited %.2f s again", secs);
	ck_assert_uint_eq(count_lines(), 1);
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	emit_simple(a, EV_AUDIT_LOGIN, 3);
	lines_read(&l, audit_file());
	ck_assert_uint_eq(l.n, 3);
	chain_check(&l, 0, 1);
	/* The file says what it is missing, before the next line. */
	lost_check(l.v[1], "login", 2, EV_AUDIT_UNWRITTEN_REASON " (lock held)", 2);
	o = parse(l.v[2]);
	ck_assert_str_eq(str_of(o, "outcome"), "ok");
	ck_assert_int_eq(int_of(o, "zone"), 3);
	json_object_put(o);
	free(l.buf);
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	close(go[1]);
	ev_audit_close(a);
	ev_config_free(c);
}
END_TEST

START_TEST(test_key_setup)
{
	ev_config *c = config_with("");
	ev_store *s = store_open();
	ev_audit *a = writer_open(c), *b = writer_open(c);
	unsigned char pk[32], pk2[32], bad[32];
	ev_secret *sk = NULL;

	/* Inside the caller's transaction with no key: later, nothing recorded. */
	ck_assert_int_eq(ev_store_begin(s), CKR_OK);
	ck_assert_int_eq(ev_audit_key_setup(a, &fake_root, s), EVR_AUDIT_KEY_LATER);
	ck_assert(!ev_audit_has_key(a));
	ck_assert_int_eq(ev_store_rollback(s), CKR_OK);

	/* The root fails: no key, the root's error. */
	fake_fail = 1;
	ck_assert_int_eq(ev_audit_key_setup(a, &fake_root, s), CKR_DEVICE_ERROR);
	fake_fail = 0;
	ck_assert(!ev_audit_has_key(a));

	ck_assert_int_eq(ev_audit_key_setup(a, &fake_root, s), CKR_OK);
	public_key(s, pk);
	/* Another writer finds the same key (also inside a transaction). */
	ck_assert_int_eq(ev_store_begin(s), CKR_OK);
	ck_assert_int_eq(ev_audit_key_open(b, &fake_root, s, &sk, pk2), CKR_OK);
	ck_assert_int_eq(ev_store_commit(s), CKR_OK);
	ck_assert_int_eq(memcmp(pk, pk2, 32), 0);
	ck_assert_uint_eq(sk->len, crypto_sign_SECRETKEYBYTES);
	ev_secret_free(sk);

	/* An existing key is unsealed without the write lock: another connection may write. */
	fake_probe = store_open();
	fake_probe_rv = CKR_GENERAL_ERROR;
	ck_assert_int_eq(ev_audit_key_setup(a, &fake_root, s), CKR_OK);
	ck_assert_int_eq(fake_probe_rv, CKR_OK);
	ck_assert(!ev_store_in_transaction(s));
	ev_store_close(fake_probe);
	fake_probe = NULL;

	/* The recorded public half replaced: refused. */
	memcpy(bad, pk, 32);
	bad[0] ^= 1;
	ck_assert_int_eq(ev_store_meta_set(s, EV_META_AUDIT_KEY_PUBLIC, bad, 32), CKR_OK);
	ck_assert_int_eq(ev_audit_key_setup(b, &fake_root, s), EVR_AUDIT_KEY_MISMATCH);
	ck_assert(!ev_audit_has_key(b));
	ev_audit_close(a);
	ev_audit_close(b);
	ev_store_close(s);
	ev_config_free(c);
}
END_TEST

/*
 * A batch of many events (its array moves as it grows): every line names
 * its own object and detail, as added.
 */
START_TEST(test_batch_grows)
{
	ev_config *c = config_with("");
	ev_audit *a = writer_open(c);
	ev_module m = {.pid = getpid(), .audit = a};
	ev_audit_batch b = {0};
	char label[32], want[32];
	json_object *o, *ob, *d;
	size_t i;
	lines l;

	ev_mod = &m;
	for (i = 0; i < 100; i++) {
		ev_audit_object obj = {.handle = 1000 + i,
				       .cls = CKO_SECRET_KEY,
				       .key_type = CKK_AES,
				       .generation = 1};
		ev_audit_detail det[] = {{"source", "bench-list", 0}, {"sequence", NULL, (int64_t)i}};
		ev_audit_event e = EV_AUDIT_EVENT_INIT(EV_AUDIT_KEY_REVOKED, EV_AUDIT_OK);

		snprintf(label, sizeof(label), "key-%zu", i);
		obj.label = (const unsigned char *)label;
		obj.label_len = strlen(label);
		e.zone = 1;
		e.object = &obj;
		e.reason = "benchmark";
		e.detail = det;
		e.ndetail = EV_ARRAY_SIZE(det);
		ev_audit_batch_add(&b, &e);
		memset(label, 'x', sizeof(label)); /* the batch holds its own copies */
	}
	ck_assert_uint_eq(b.n, 100);
	ev_audit_batch_emit(&b);
	ev_mod = NULL;
	ev_audit_close(a);

	lines_read(&l, audit_file());
	ck_assert_uint_eq(l.n, 100);
	chain_check(&l, 0, 1);
	for (i = 0; i < 100; i++) {
		o = parse(l.v[i]);
		ck_assert(json_object_object_get_ex(o, "object", &ob));
		snprintf(want, sizeof(want), "key-%zu", i);
		ck_assert_str_eq(str_of(ob, "label"), want);
		ck_assert_int_eq(int_of(ob, "handle"), (int64_t)(1000 + i));
		ck_assert(json_object_object_get_ex(o, "detail", &d));
		ck_assert_int_eq(int_of(d, "sequence"), (int64_t)i);
		ck_assert_str_eq(str_of(d, "source"), "bench-list");
		json_object_put(o);
	}
	free(l.buf);
	ev_config_free(c);
}
END_TEST

#ifdef ALLOC_FAIL_TESTS
/* A batch's event that cannot be copied is lost, and a line says so (audit_event.h). */
START_TEST(test_batch_lost)
{
	ev_config *c = config_with("");
	ev_audit *a = writer_open(c);
	ev_module m = {.pid = getpid(), .audit = a};
	ev_audit_object ob = {.handle = 7,
			      .cls = CKO_SECRET_KEY,
			      .key_type = CKK_AES,
			      .label = (const unsigned char *)"k1",
			      .label_len = 2,
			      .generation = 2};
	ev_audit_event e = EV_AUDIT_EVENT_INIT(EV_AUDIT_KEY_RETIRED, EV_AUDIT_OK);
	ev_audit_batch b = {0}, b2 = {0};
	json_object *o;
	lines l;

	ev_audit_ident_clear(NULL); /* a no-op */
	ev_mod = &m;
	e.zone = 3;
	e.object = &ob;
	ev_audit_batch_add(&b, &e);
	alloc_fail = 1;
	ev_audit_batch_add(&b, &e); /* the label's copy fails */
	alloc_fail = 0;
	ev_audit_batch_add(&b, &e);
	e.zone = 5;
	alloc_fail = 1;
	ev_audit_batch_add(&b, &e);
	alloc_fail = 0;
	ck_assert_uint_eq(b.n, 2);
	ck_assert_uint_eq(b.lost, 2);
	ev_audit_batch_emit(&b);
	ck_assert_uint_eq(b.n, 0);
	ck_assert_uint_eq(b.lost, 0);

	/* Lost from an empty batch (its array cannot grow): the line alone. */
	e.event = EV_AUDIT_KEY_DESTROYED;
	e.zone = 6;
	alloc_fail = 1;
	ev_audit_batch_add(&b2, &e);
	alloc_fail = 0;
	ck_assert_uint_eq(b2.n, 0);
	ck_assert_ptr_null(b2.v);
	ev_audit_batch_emit(&b2);
	ev_mod = NULL;
	ev_audit_close(a);

	lines_read(&l, audit_file());
	ck_assert_uint_eq(l.n, 4);
	chain_check(&l, 0, 1);
	o = parse(l.v[1]);
	ck_assert_str_eq(str_of(o, "event"), "key.retired");
	ck_assert_str_eq(str_of(o, "outcome"), "ok");
	ck_assert(!has(o, "reason"));
	json_object_put(o);
	lost_check(l.v[2], "key.retired", 0, EV_AUDIT_LOST_REASON, 2); /* zones 3 and 5 */
	lost_check(l.v[3], "key.destroyed", 6, EV_AUDIT_LOST_REASON, 1);
	free(l.buf);
	ev_config_free(c);
}
END_TEST

/*
 * A line that cannot be made (out of memory) is counted, and the next
 * line written says so; at close too.
 */
START_TEST(test_emit_lost)
{
	ev_config *c = config_with("");
	ev_audit *a = writer_open(c);
	lines l;

	emit_simple(a, EV_AUDIT_LOGIN, 1);
	alloc_fail = 1;
	emit_simple(a, EV_AUDIT_ZONE_REMOVED, 4);
	emit_simple(a, EV_AUDIT_ZONE_REMOVED, 5);
	alloc_fail = 0;
	ck_assert_uint_eq(count_lines(), 1);
	emit_simple(a, EV_AUDIT_LOGIN, 1);
	alloc_fail = 1;
	emit_simple(a, EV_AUDIT_ZONE_CREATED, 6);
	alloc_fail = 0;
	ev_audit_close(a); /* writes the count it still has */
	lines_read(&l, audit_file());
	ck_assert_uint_eq(l.n, 4);
	chain_check(&l, 0, 1);
	/* zones 4 and 5: none */
	lost_check(l.v[1], "zone.removed", 0, EV_AUDIT_UNWRITTEN_REASON " (out of memory)", 2);
	lost_check(l.v[3], "zone.created", 6, EV_AUDIT_UNWRITTEN_REASON " (out of memory)", 1);
	free(l.buf);
	ev_config_free(c);
}
END_TEST
#endif

/* A child after fork gives up its parent's writer without writing. */
START_TEST(test_abandon)
{
	pid_t pid;
	int status;
	lines l;
	keyed k;

	keyed_open(&k, "checkpoint_lines = 1000");
	emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		ev_audit_abandon(k.a);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_uint_eq(count_lines(), 1); /* no checkpoint from the child */
	emit_simple(k.a, EV_AUDIT_LOGIN, 1);
	keyed_close(&k);
	lines_read(&l, audit_file());
	ck_assert_uint_eq(l.n, 3); /* and the parent's checkpoint at close */
	chain_check(&l, 0, 1);
	free(l.buf);
}
END_TEST

/*
 * In a private mount namespace (the test runs as root, as CI does), a
 * tmpfs over /dev holding our own /dev/log socket: what syslog() sends.
 * The child answers through its exit status: 0 when the datagram is the
 * file's line with facility authpriv and priority info.
 */
static int
syslog_child(const ev_config *c)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = 5};
	char got[EV_AUDIT_LINE_MAX + 128], want[EV_AUDIT_LINE_MAX + 64];
	ev_audit *a = NULL;
	ev_store *s;
	ssize_t n;
	size_t i;
	lines l;
	int fd;

	if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount("tmpfs", "/dev", "tmpfs", 0, "mode=0755") != 0)
		return 10;
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	strcpy(sun.sun_path, "/dev/log");
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0)
		return 11;
	if (ev_audit_open(c, &a) != CKR_OK)
		return 12;
	s = store_open();
	if (ev_audit_key_setup(a, &fake_root, s) != CKR_OK)
		return 17;
	emit_simple(a, EV_AUDIT_ZONE_CREATED, 3);
	/* A checkpoint's line is copied too. */
	if (ev_audit_checkpoint(a) != CKR_OK)
		return 18;
	ev_audit_close(a);
	ev_store_close(s);
	lines_read(&l, audit_file());
	if (l.n != 2)
		return 13;
	for (i = 0; i < l.n; i++) {
		/* <86>: LOG_AUTHPRIV (10 << 3) | LOG_INFO (6); the host's ident, then our message. */
		snprintf(want, sizeof(want), "edgevault audit: %s", l.v[i]);
		do {
			n = recv(fd, got, sizeof(got) - 1, 0);
			if (n <= 0)
				return 14;
			got[n] = '\0';
		} while (strstr(got, "edgevault audit:") == NULL);
		if (strncmp(got, "<86>", 4) != 0)
			return 15;
		n = (ssize_t)strlen(got) - (ssize_t)strlen(want);
		if (n < 0 || strcmp(got + n, want) != 0)
			return 16;
	}
	free(l.buf);
	return 0;
}

START_TEST(test_syslog_copy)
{
	ev_config *c = config_with("syslog = true\ncheckpoint_lines = 1000");
	int status;
	pid_t pid;

	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(syslog_child(c));
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "syslog child: status %d (10: no mount namespace: run as root)", status);
	ev_config_free(c);
}
END_TEST

static Suite *
audit_suite(void)
{
	Suite *s = suite_create("audit");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, tmpdir_remove);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_chain_and_members);
	tcase_add_test(tc, test_path);
	tcase_add_test(tc, test_processes_at_once);
	tcase_add_test(tc, test_threads_at_once);
	tcase_add_test(tc, test_torn_tail);
	tcase_add_test(tc, test_torn_only);
	tcase_add_test(tc, test_labels);
	tcase_add_test(tc, test_disabled);
	tcase_add_test(tc, test_unwritable);
	tcase_add_test(tc, test_hold);
	tcase_add_test(tc, test_sync_later);
	tcase_add_test(tc, test_checkpoints);
	tcase_add_test(tc, test_checkpoint_interval);
	tcase_add_test(tc, test_checkpoint_if_due);
	tcase_add_test(tc, test_truncated_no_checkpoint);
	tcase_add_test(tc, test_head_removed);
	tcase_add_test(tc, test_head_unwritable);
	tcase_add_test(tc, test_head_stale);
	tcase_add_test(tc, test_cut_and_regrown);
	tcase_add_test(tc, test_symlinks);
	tcase_add_test(tc, test_lock_held);
	tcase_add_test(tc, test_key_setup);
	tcase_add_test(tc, test_abandon);
	tcase_add_test(tc, test_batch_grows);
#ifdef ALLOC_FAIL_TESTS
	tcase_add_test(tc, test_batch_lost);
	tcase_add_test(tc, test_emit_lost);
#endif
	tcase_add_test(tc, test_syslog_copy);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(audit_suite());
}
