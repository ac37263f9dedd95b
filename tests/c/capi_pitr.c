/*
 * Point-in-time recovery through the C ABI, part of capi_test: a store
 * with the default file bucket and remote durability, bookmarks, restore
 * into files, restore_on_next_open and its undo, verify, and hostile
 * input (malformed and forged bookmarks, bad times, paths and buffers).
 */
#define _POSIX_C_SOURCE 200809L

#include "amber.h"
#include "check.h"

#include <ctype.h>
#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STORE_OK(expr) EXPECT(expr, AMBER_OK, amber_store_errmsg(store))

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A bookmark with valid check digits for any (epoch, seq), made the way
 * amber makes them: CRC-32 of "amber bookmark v1" and both numbers, big
 * endian. Well-formed, so amber must judge whether it is restorable. */
static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

static void forge(char out[AMBER_BOOKMARK_SIZE], uint64_t epoch,
                  uint64_t seq) {
    unsigned char be[16];
    const char *tag = "amber bookmark v1";
    for (int i = 0; i < 8; i++) {
        be[i] = (unsigned char)(epoch >> (56 - 8 * i));
        be[8 + i] = (unsigned char)(seq >> (56 - 8 * i));
    }
    uint32_t crc = crc32_update(0, (const unsigned char *)tag, strlen(tag));
    crc = crc32_update(crc, be, sizeof be);
    snprintf(out, AMBER_BOOKMARK_SIZE, "%016llx-%016llx-%08lx",
             (unsigned long long)epoch, (unsigned long long)seq,
             (unsigned long)crc);
}

static uint64_t hex_field(const char *bookmark, int at) {
    char part[17];
    memcpy(part, bookmark + at, 16);
    part[16] = '\0';
    return strtoull(part, NULL, 16);
}

static AmberObject *open_obj(AmberStore *store, const char *name) {
    AmberObject *obj = NULL;
    STORE_OK(amber_store_open_object(store, name, strlen(name), &obj));
    return obj;
}

/* One turn: insert `i` and set kv "v" to its text; waits for the ticket,
 * so at remote durability the commit is in the bucket afterwards. */
static void commit_turn(AmberObject *obj, int i) {
    char text[16];
    AmberTicket *t = NULL;
    AmberValue p = amber_value_int(i);
    snprintf(text, sizeof text, "%d", i);
    OBJ_OK(amber_object_begin_turn(obj));
    OBJ_OK(amber_exec(obj, "INSERT INTO t VALUES (?1)", &p, 1, NULL));
    OBJ_OK(amber_kv_put(obj, "v", 1, (const uint8_t *)text, strlen(text), 0));
    OBJ_OK(amber_object_end_turn(obj, &t));
    EXPECT(amber_ticket_wait(t, 30000, NULL), AMBER_OK, amber_ticket_errmsg(t));
    amber_ticket_free(t);
}

/* The state of "doc": kv "v" must be `want` and t must hold `rows` rows. */
static void check_state(AmberObject *obj, const char *want, int64_t rows) {
    AmberBytes val = {NULL, 0};
    bool found = false;
    AmberCursor *cur = NULL;
    AmberValue v;
    OBJ_OK(amber_kv_get(obj, "v", 1, &val, &found));
    CHECK(found && val.len == strlen(want) &&
          memcmp(val.data, want, val.len) == 0);
    amber_bytes_free(&val);
    OBJ_OK(amber_exec(obj, "SELECT count(*) FROM t", NULL, 0, &cur));
    CHECK(cur != NULL && amber_cursor_next(cur) == AMBER_ROW &&
          amber_cursor_value(cur, 0, &v) == AMBER_OK && v.integer == rows);
    amber_cursor_free(cur);
}

static int is_sqlite_file(const char *path) {
    char head[16] = {0};
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return 0;
    }
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    return n == sizeof head && memcmp(head, "SQLite format 3", 16) == 0;
}

static int file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f != NULL) {
        fclose(f);
    }
    return f != NULL;
}

/* Files in `dir` whose name contains `part`. */
static int count_files(const char *dir, const char *part) {
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        n += strstr(e->d_name, part) != NULL;
    }
    if (d != NULL) {
        closedir(d);
    }
    return n;
}

static atomic_int remote_calls;
static atomic_int remote_code;

static void on_remote(void *user_data, AmberCode code, uint64_t seq,
                      const char *message) {
    (void)user_data, (void)seq, (void)message;
    atomic_store(&remote_code, code);
    atomic_fetch_add(&remote_calls, 1);
}

/* Without a bucket: remote durability is refused, PITR calls say why. */
static void test_no_bucket(const char *dir) {
    char path[4096], buf[AMBER_BOOKMARK_SIZE];
    AmberConfig *cfg = NULL;
    AmberStore *store = NULL;
    bool ok = false;

    snprintf(path, sizeof path, "%s-nobucket", dir);
    EXPECT(amber_config_new(path, &cfg), AMBER_OK, "");
    EXPECT(amber_config_disable_bucket(cfg), AMBER_OK, "");
    EXPECT(amber_config_set_durability(cfg, AMBER_DURABILITY_REMOTE), AMBER_OK,
           "");
    EXPECT(amber_store_open(cfg, &store), AMBER_ERR_INVALID_INPUT,
           "remote needs a bucket");
    CHECK(strstr(amber_config_errmsg(cfg), "bucket") != NULL);
    CHECK(store == NULL);
    EXPECT(amber_config_set_durability(cfg, AMBER_DURABILITY_LOCAL), AMBER_OK,
           "");
    EXPECT(amber_store_open(cfg, &store), AMBER_OK, amber_config_errmsg(cfg));
    amber_config_free(cfg);
    EXPECT(amber_store_bookmark_for_time(store, "x", 1, now_ms(), buf,
                                         sizeof buf),
           AMBER_ERR_INVALID_INPUT, "no bucket");
    CHECK(strstr(amber_store_errmsg(store), "needs a bucket") != NULL);
    EXPECT(amber_store_verify(store, "x", 1, &ok, NULL),
           AMBER_ERR_INVALID_INPUT, "no bucket");
    amber_store_free(store);
}

void test_pitr(const char *dir) {
    char path[4096], out[4200];
    char b[5][AMBER_BOOKMARK_SIZE], undo[AMBER_BOOKMARK_SIZE];
    char buf[AMBER_BOOKMARK_SIZE], forged[AMBER_BOOKMARK_SIZE];
    AmberConfig *cfg = NULL;
    AmberStore *store = NULL;
    AmberObject *obj = NULL;
    AmberRestoreReport rep;
    AmberRestoreTarget target;
    bool ok = false;
    const char *problems = "unset";

    test_no_bucket(dir);

    /* The default bucket (DATA_DIR-pitr/bucket), remote durability. */
    snprintf(path, sizeof path, "%s-pitr", dir);
    EXPECT(amber_config_new(path, &cfg), AMBER_OK, "");
    EXPECT(amber_config_set_durability(cfg, AMBER_DURABILITY_REMOTE), AMBER_OK,
           "");
    EXPECT(amber_config_set_pitr(cfg, AMBER_PITR_RETENTION_MS, 3600000),
           AMBER_OK, amber_config_errmsg(cfg));
    EXPECT(amber_config_set_pitr(cfg, AMBER_PITR_FLUSH_INTERVAL_MS, 1), AMBER_OK,
           amber_config_errmsg(cfg));
    EXPECT(amber_store_open(cfg, &store), AMBER_OK, amber_config_errmsg(cfg));
    amber_config_free(cfg);
    if (store == NULL) {
        return;
    }
    obj = open_obj(store, "doc");
    if (obj == NULL) {
        amber_store_free(store);
        return;
    }

    /* Bookmarks of a few turns. */
    OBJ_OK(amber_exec(obj, "CREATE TABLE t (x INTEGER)", NULL, 0, NULL));
    OBJ_OK(amber_kv_put(obj, "v", 1, (const uint8_t *)"0", 1, 0));
    OBJ_OK(amber_object_end_turn(obj, NULL));
    OBJ_OK(amber_object_sync(obj, NULL));
    OBJ_OK(amber_object_current_bookmark(obj, b[0], sizeof b[0]));
    for (int i = 1; i <= 3; i++) {
        commit_turn(obj, i);
        OBJ_OK(amber_object_current_bookmark(obj, b[i], sizeof b[i]));
        CHECK(strlen(b[i]) == 42 && strcmp(b[i - 1], b[i]) < 0);
        CHECK(hex_field(b[i], 17) == hex_field(b[i - 1], 17) + 1);
    }
    memset(buf, 'x', sizeof buf);
    EXPECT(amber_object_current_bookmark(obj, buf, 42),
           AMBER_ERR_BUFFER_TOO_SMALL, "");
    CHECK(buf[0] == 'x'); /* nothing written */
    CHECK(strstr(amber_object_errmsg(obj), "43") != NULL);
    EXPECT(amber_object_current_bookmark(obj, NULL, 0), AMBER_ERR_NULL_POINTER,
           "");
    EXPECT(amber_object_current_bookmark(NULL, buf, sizeof buf),
           AMBER_ERR_NULL_POINTER, "");

    /* A ticket callback at remote durability runs on a shipper thread. */
    OBJ_OK(amber_kv_put(obj, "cb", 2, (const uint8_t *)"1", 1, 0));
    AmberTicket *t = NULL;
    OBJ_OK(amber_object_end_turn(obj, &t));
    EXPECT(amber_ticket_on_complete(t, on_remote, NULL), AMBER_OK, "");
    amber_ticket_free(t);
    for (int i = 0; i < 3000 && atomic_load(&remote_calls) == 0; i++) {
        sleep_ms(10);
    }
    CHECK(atomic_load(&remote_calls) == 1);
    CHECK(atomic_load(&remote_code) == AMBER_OK);
    OBJ_OK(amber_kv_delete(obj, "cb", 2, 0, NULL));
    OBJ_OK(amber_object_end_turn(obj, &t));
    EXPECT(amber_ticket_wait(t, 30000, NULL), AMBER_OK, "");
    amber_ticket_free(t);
    OBJ_OK(amber_object_current_bookmark(obj, b[4], sizeof b[4]));

    /* Time travel: now is the latest commit; too old or absurd times fail. */
    STORE_OK(amber_store_bookmark_for_time(store, "doc", 3, now_ms(), buf,
                                           sizeof buf));
    CHECK(strcmp(buf, b[4]) == 0);
    EXPECT(amber_store_bookmark_for_time(store, "doc", 3, now_ms() - 7200000,
                                         buf, sizeof buf),
           AMBER_ERR_INVALID_INPUT, "outside the retention window");
    CHECK(strstr(amber_store_errmsg(store), "retention") != NULL);
    EXPECT(amber_store_bookmark_for_time(store, "doc", 3, UINT64_MAX, buf,
                                         sizeof buf),
           AMBER_ERR_INVALID_INPUT, "not a time");
    EXPECT(amber_store_bookmark_for_time(store, "doc", 3, now_ms(), buf, 10),
           AMBER_ERR_BUFFER_TOO_SMALL, "");
    EXPECT(amber_store_bookmark_for_time(store, NULL, 3, now_ms(), buf,
                                         sizeof buf),
           AMBER_ERR_NULL_POINTER, "");
    EXPECT(amber_store_bookmark_for_time(store, "\xff", 1, now_ms(), buf,
                                         sizeof buf),
           AMBER_ERR_INVALID_UTF8, "");

    /* Restore into files: a bookmark, the latest, a time. */
    snprintf(out, sizeof out, "%s/restored-1.db", path);
    target = amber_restore_bookmark(b[1]);
    memset(&rep, 0, sizeof rep);
    STORE_OK(amber_store_restore(store, "doc", 3, &target, out, false, &rep));
    CHECK(strcmp(rep.bookmark, b[1]) == 0 && strcmp(rep.target, b[1]) == 0);
    CHECK(!rep.partial && rep.damage == NULL && rep.bytes_fetched > 0);
    CHECK(rep.commit_time_ms > 0 && rep.commit_time_ms <= now_ms());
    CHECK(is_sqlite_file(out));
    EXPECT(amber_store_restore(store, "doc", 3, &target, out, false, NULL),
           AMBER_ERR_INVALID_INPUT, "never overwrites");
    CHECK(strstr(amber_store_errmsg(store), "exists") != NULL);
    snprintf(out, sizeof out, "%s/restored-latest.db", path);
    target = amber_restore_latest();
    STORE_OK(amber_store_restore(store, "doc", 3, &target, out, false, &rep));
    CHECK(strcmp(rep.bookmark, b[4]) == 0);
    snprintf(out, sizeof out, "%s/restored-now.db", path);
    target = amber_restore_time(now_ms());
    STORE_OK(amber_store_restore(store, "doc", 3, &target, out, true, &rep));
    CHECK(strcmp(rep.bookmark, b[4]) == 0 && !rep.partial);

    /* Hostile restores. */
    snprintf(out, sizeof out, "%s/hostile.db", path);
    target = amber_restore_bookmark("not a bookmark");
    EXPECT(amber_store_restore(store, "doc", 3, &target, out, false, NULL),
           AMBER_ERR_BAD_BOOKMARK, "");
    CHECK(strstr(amber_store_errmsg(store), "malformed bookmark") != NULL);
    strcpy(buf, b[1]);
    buf[41] = buf[41] == '0' ? '1' : '0'; /* a typo in the check digits */
    target = amber_restore_bookmark(buf);
    EXPECT(amber_store_restore(store, "doc", 3, &target, out, false, NULL),
           AMBER_ERR_BAD_BOOKMARK, "typo");
    CHECK(strstr(amber_store_errmsg(store), "check digits") != NULL);
    for (size_t i = 0; i < 42; i++) {
        buf[i] = (char)toupper((unsigned char)b[1][i]);
    }
    target = amber_restore_bookmark(buf);
    EXPECT(amber_store_restore(store, "doc", 3, &target, out, false, NULL),
           AMBER_ERR_BAD_BOOKMARK, "uppercase");
    target = amber_restore_bookmark("\xc3\x28");
    EXPECT(amber_store_restore(store, "doc", 3, &target, out, false, NULL),
           AMBER_ERR_BAD_BOOKMARK, "not UTF-8");
    target = amber_restore_bookmark(NULL);
    EXPECT(amber_store_restore(store, "doc", 3, &target, out, false, NULL),
           AMBER_ERR_NULL_POINTER, "");
    forge(forged, hex_field(b[4], 0), hex_field(b[4], 17) + 5);
    target = amber_restore_bookmark(forged);
    EXPECT(amber_store_restore(store, "doc", 3, &target, out, false, NULL),
           AMBER_ERR_INVALID_INPUT, "past the newest commit");
    forge(forged, 99, 1);
    target = amber_restore_bookmark(forged);
    EXPECT(amber_store_restore(store, "doc", 3, &target, out, false, NULL),
           AMBER_ERR_INVALID_INPUT, "no such timeline");
    target = amber_restore_time(UINT64_MAX);
    EXPECT(amber_store_restore(store, "doc", 3, &target, out, false, NULL),
           AMBER_ERR_INVALID_INPUT, "not a time");
    target.kind = 7;
    EXPECT(amber_store_restore(store, "doc", 3, &target, out, false, NULL),
           AMBER_ERR_INVALID_INPUT, "unknown kind");
    EXPECT(amber_store_restore(store, "doc", 3, NULL, out, false, NULL),
           AMBER_ERR_NULL_POINTER, "");
    target = amber_restore_latest();
    EXPECT(amber_store_restore(store, "doc", 3, &target, NULL, false, NULL),
           AMBER_ERR_NULL_POINTER, "");
    EXPECT(amber_store_restore(store, "doc", 3, &target, "", false, NULL),
           AMBER_ERR_INVALID_INPUT, "empty path");
    snprintf(out, sizeof out, "%s/no/such/dir/x.db", path);
    EXPECT(amber_store_restore(store, "doc", 3, &target, out, false, NULL),
           AMBER_ERR_IO, "missing directory");
    CHECK(!file_exists(out));
    snprintf(out, sizeof out, "%s/hostile.db", path);
    CHECK(!file_exists(out)); /* no failure left a file behind */
    CHECK(count_files(path, "amber-restore") == 0); /* nor a temporary */
    CHECK(count_files(path, "restored-") == 3);

    /* Rewind the live object to b[1]; the undo bookmark is the present. */
    EXPECT(amber_object_restore_on_next_open(obj, "garbage", undo,
                                             sizeof undo),
           AMBER_ERR_BAD_BOOKMARK, "");
    forge(forged, 99, 1);
    EXPECT(amber_object_restore_on_next_open(obj, forged, undo, sizeof undo),
           AMBER_ERR_INVALID_INPUT, amber_object_errmsg(obj));
    CHECK(strstr(amber_object_errmsg(obj), "not restorable") != NULL);
    EXPECT(amber_object_restore_on_next_open(obj, b[1], undo, 5),
           AMBER_ERR_BUFFER_TOO_SMALL, "");
    EXPECT(amber_object_restore_on_next_open(obj, NULL, undo, sizeof undo),
           AMBER_ERR_NULL_POINTER, "");
    OBJ_OK(amber_object_begin_turn(obj));
    EXPECT(amber_object_restore_on_next_open(obj, b[1], undo, sizeof undo),
           AMBER_ERR_MISUSE, "inside a turn");
    OBJ_OK(amber_object_end_turn(obj, NULL));
    check_state(obj, "3", 3); /* none of it touched the object */
    OBJ_OK(amber_object_restore_on_next_open(obj, b[1], undo, sizeof undo));
    CHECK(strcmp(undo, b[4]) == 0);
    EXPECT(amber_object_current_bookmark(obj, buf, sizeof buf),
           AMBER_ERR_CLOSED, "the handle is closed");
    EXPECT(amber_object_free(obj), AMBER_OK, "");

    obj = open_obj(store, "doc");
    check_state(obj, "1", 1);
    OBJ_OK(amber_object_current_bookmark(obj, buf, sizeof buf));
    CHECK(hex_field(buf, 0) > hex_field(b[1], 0)); /* a new timeline */
    CHECK(hex_field(buf, 17) == hex_field(b[1], 17));
    CHECK(strcmp(buf, undo) > 0); /* bookmarks sort in commit order */

    /* Write on the new timeline, then undo the restore. */
    commit_turn(obj, 9);
    check_state(obj, "9", 2);
    OBJ_OK(amber_object_restore_on_next_open(obj, undo, NULL, 0));
    amber_object_free(obj);
    obj = open_obj(store, "doc");
    check_state(obj, "3", 3);

    /* The old timeline stays restorable after both switches. */
    snprintf(out, sizeof out, "%s/restored-2.db", path);
    target = amber_restore_bookmark(b[2]);
    STORE_OK(amber_store_restore(store, "doc", 3, &target, out, false, &rep));
    CHECK(strcmp(rep.bookmark, b[2]) == 0 && is_sqlite_file(out));

    /* Verify reads the whole history back. A timeline's first snapshot is
     * uploaded in the background when the restored object opens; a commit
     * at remote durability ships after it, so waiting for one makes the
     * new timeline verifiable (verify flags a timeline without one). */
    commit_turn(obj, 10);
    STORE_OK(amber_store_verify(store, "doc", 3, &ok, &problems));
    CHECK(ok && problems == NULL);
    if (!ok) {
        fprintf(stderr, "verify: %s\n", problems ? problems : "(null)");
    }
    EXPECT(amber_store_verify(store, "doc", 3, NULL, NULL),
           AMBER_ERR_NULL_POINTER, "");
    EXPECT(amber_store_verify(NULL, "doc", 3, &ok, NULL),
           AMBER_ERR_NULL_POINTER, "");

    OBJ_OK(amber_object_close(obj, NULL));
    amber_object_free(obj);
    EXPECT(amber_store_free(store), AMBER_OK, "");
}
