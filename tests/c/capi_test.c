/*
 * Exercises amber's C ABI end to end: open, SQL, KV, a turn, a ticket
 * wait, a completion callback, alarms, the thread model, hostile input, a
 * clean close, and (in capi_pitr.c, linked in) bookmarks and restore.
 * Run by tests/capi.rs (and under valgrind there).
 *
 * Usage: capi_test DATA_DIR. Exits 0 when every check passed, 1 otherwise.
 */
#define _POSIX_C_SOURCE 200809L

#include "amber.h"
#include "check.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int checks = 0;
int failures = 0;

/* ---- completion callback: records what it saw, signals the main thread -- */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int calls;
    AmberCode code;
    uint64_t seq;
    int on_caller_thread;
    pthread_t caller;
} Completion;

static void on_complete(void *user_data, AmberCode code, uint64_t seq,
                        const char *message) {
    Completion *c = user_data;
    (void)message;
    pthread_mutex_lock(&c->lock);
    c->calls++;
    c->code = code;
    c->seq = seq;
    c->on_caller_thread = pthread_equal(pthread_self(), c->caller);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static void completion_init(Completion *c) {
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->caller = pthread_self();
}

static void completion_destroy(Completion *c) {
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
}

/* Waits up to 10 s for the first call; returns the number of calls. */
static int completion_wait(Completion *c) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    pthread_mutex_lock(&c->lock);
    while (c->calls == 0) {
        if (pthread_cond_timedwait(&c->cond, &c->lock, &deadline) != 0) {
            break;
        }
    }
    int calls = c->calls;
    pthread_mutex_unlock(&c->lock);
    return calls;
}

/* ---- helpers ------------------------------------------------------------ */

static AmberObject *open_object(AmberStore *store, const char *name) {
    AmberObject *obj = NULL;
    EXPECT(amber_store_open_object(store, name, strlen(name), &obj), AMBER_OK,
           amber_store_errmsg(store));
    return obj;
}

static int64_t query_int(AmberObject *obj, const char *sql) {
    AmberCursor *cur = NULL;
    AmberValue v;
    int64_t out = -1;
    OBJ_OK(amber_exec(obj, sql, NULL, 0, &cur));
    if (cur && amber_cursor_next(cur) == AMBER_ROW &&
        amber_cursor_value(cur, 0, &v) == AMBER_OK &&
        v.kind == AMBER_TYPE_INTEGER) {
        out = v.integer;
    }
    amber_cursor_free(cur);
    return out;
}

static int text_is(const AmberValue *v, const char *want) {
    return v->kind == AMBER_TYPE_TEXT && v->len == strlen(want) &&
           memcmp(v->data, want, v->len) == 0 &&
           ((const char *)v->data)[v->len] == '\0';
}

/* ---- sections ----------------------------------------------------------- */

static AmberStore *test_open(const char *dir) {
    AmberConfig *cfg = NULL;
    AmberStore *store = NULL;

    CHECK(amber_abi_version() == AMBER_ABI_VERSION);
    CHECK(strlen(amber_version()) > 0);
    CHECK(strcmp(amber_code_name(AMBER_ERR_BUSY), "AMBER_ERR_BUSY") == 0);
    CHECK(strcmp(amber_code_name(12345), "AMBER_UNKNOWN") == 0);

    EXPECT(amber_config_new(NULL, &cfg), AMBER_ERR_NULL_POINTER, "NULL dir");
    EXPECT(amber_config_new(dir, NULL), AMBER_ERR_NULL_POINTER, "NULL out");
    EXPECT(amber_config_new("", &cfg), AMBER_ERR_INVALID_INPUT, "empty dir");
    CHECK(cfg == NULL);
    EXPECT(amber_config_new(dir, &cfg), AMBER_OK, "config");
    EXPECT(amber_config_set_durability(cfg, AMBER_DURABILITY_REMOTE), AMBER_OK,
           amber_config_errmsg(cfg));
    EXPECT(amber_config_set_durability(cfg, 42), AMBER_ERR_INVALID_INPUT, "");
    CHECK(strstr(amber_config_errmsg(cfg), "42") != NULL);
    EXPECT(amber_config_set_durability(cfg, AMBER_DURABILITY_LOCAL), AMBER_OK,
           amber_config_errmsg(cfg));
    CHECK(strcmp(amber_config_errmsg(cfg), "not an error") == 0);

    /* Bucket URLs are checked when set; the bucket is reached on open. */
    EXPECT(amber_config_set_bucket_url(cfg, "ftp://x"), AMBER_ERR_INVALID_INPUT,
           "");
    CHECK(strstr(amber_config_errmsg(cfg), "unsupported scheme") != NULL);
    EXPECT(amber_config_set_bucket_url(cfg, "file://relative/dir"),
           AMBER_ERR_INVALID_INPUT, "");
    EXPECT(amber_config_set_bucket_url(cfg, "no scheme"),
           AMBER_ERR_INVALID_INPUT, "");
    EXPECT(amber_config_set_bucket_url(cfg, "s3://user:secret@bucket/p"),
           AMBER_ERR_INVALID_INPUT, "credentials in the URL");
    EXPECT(amber_config_set_bucket_url(cfg, "s3://B!/p"),
           AMBER_ERR_INVALID_INPUT, "bad bucket name");
    EXPECT(amber_config_set_bucket_url(cfg, "\xff://x"),
           AMBER_ERR_INVALID_UTF8, "");
    EXPECT(amber_config_set_bucket_url(cfg, "s3://bucket/prefix"), AMBER_OK,
           amber_config_errmsg(cfg));
    EXPECT(amber_config_disable_bucket(cfg), AMBER_OK, "");
    EXPECT(amber_config_disable_bucket(NULL), AMBER_ERR_NULL_POINTER, "");
    EXPECT(amber_config_set_bucket_url(cfg, NULL), AMBER_OK, "the default");
    EXPECT(amber_config_set_pitr(cfg, AMBER_PITR_RETENTION_MS, 0),
           AMBER_ERR_INVALID_INPUT, "");
    EXPECT(amber_config_set_pitr(cfg, AMBER_PITR_FLUSH_INTERVAL_MS, 3600001),
           AMBER_ERR_INVALID_INPUT, "");
    EXPECT(amber_config_set_pitr(cfg, AMBER_PITR_UPLOAD_ATTEMPTS, UINT64_MAX),
           AMBER_ERR_INVALID_INPUT, "");
    EXPECT(amber_config_set_pitr(cfg, 99, 1), AMBER_ERR_INVALID_INPUT, "");
    EXPECT(amber_config_set_pitr(cfg, AMBER_PITR_FLUSH_INTERVAL_MS, 0), AMBER_OK,
           amber_config_errmsg(cfg));
    EXPECT(amber_config_set_limit(cfg, AMBER_LIMIT_MAX_KEY_BYTES, 64), AMBER_OK,
           amber_config_errmsg(cfg));
    EXPECT(amber_config_set_limit(cfg, AMBER_LIMIT_MAX_KEY_BYTES, 0),
           AMBER_ERR_INVALID_INPUT, "");
    EXPECT(amber_config_set_limit(cfg, 999, 1), AMBER_ERR_INVALID_INPUT, "");
    EXPECT(amber_config_set_sync_threads(cfg, 2), AMBER_OK, "");
    EXPECT(amber_config_set_sync_threads(cfg, 0), AMBER_ERR_INVALID_INPUT, "");

    EXPECT(amber_store_open(cfg, NULL), AMBER_ERR_NULL_POINTER, "");
    EXPECT(amber_store_open(NULL, &store), AMBER_ERR_NULL_POINTER, "");
    EXPECT(amber_store_open(cfg, &store), AMBER_OK, amber_config_errmsg(cfg));
    EXPECT(amber_config_free(cfg), AMBER_OK, "");
    return store;
}

static void test_sql(AmberObject *obj) {
    AmberCursor *cur = NULL;
    AmberValue v;
    const unsigned char blob[] = {0, 1, 2, 255};

    OBJ_OK(amber_exec(obj,
                      "CREATE TABLE msgs (id INTEGER PRIMARY KEY, body TEXT, "
                      "score REAL, raw BLOB, note)",
                      NULL, 0, NULL));
    AmberValue params[] = {
        amber_value_int(7),
        amber_value_text("h\xc3\xa9llo"),
        amber_value_real(2.5),
        amber_value_blob(blob, sizeof blob),
        amber_value_null(),
    };
    OBJ_OK(amber_exec(obj, "INSERT INTO msgs VALUES (?1, ?2, ?3, ?4, ?5)",
                      params, 5, &cur));
    CHECK(amber_cursor_rows_written(cur) == 1);
    CHECK(amber_cursor_column_count(cur) == 0);
    EXPECT(amber_cursor_next(cur), AMBER_DONE, "");
    amber_cursor_free(cur);
    cur = NULL;

    AmberValue one = amber_value_int(7);
    OBJ_OK(amber_exec(obj,
                      "SELECT id, body, score, raw, note FROM msgs WHERE id = ?",
                      &one, 1, &cur));
    CHECK(amber_cursor_column_count(cur) == 5);
    CHECK(strcmp(amber_cursor_column_name(cur, 0), "id") == 0);
    CHECK(strcmp(amber_cursor_column_name(cur, 4), "note") == 0);
    CHECK(amber_cursor_column_name(cur, 5) == NULL);
    EXPECT(amber_cursor_value(cur, 0, &v), AMBER_ERR_MISUSE, "before next");
    CHECK(strstr(amber_cursor_errmsg(cur), "amber_cursor_next") != NULL);
    EXPECT(amber_cursor_next(cur), AMBER_ROW, amber_cursor_errmsg(cur));
    EXPECT(amber_cursor_value(cur, 0, &v), AMBER_OK, amber_cursor_errmsg(cur));
    CHECK(v.kind == AMBER_TYPE_INTEGER && v.integer == 7);
    EXPECT(amber_cursor_value(cur, 1, &v), AMBER_OK, "");
    CHECK(text_is(&v, "h\xc3\xa9llo"));
    EXPECT(amber_cursor_value(cur, 2, &v), AMBER_OK, "");
    CHECK(v.kind == AMBER_TYPE_REAL && v.real == 2.5);
    EXPECT(amber_cursor_value(cur, 3, &v), AMBER_OK, "");
    CHECK(v.kind == AMBER_TYPE_BLOB && v.len == 4 &&
          memcmp(v.data, blob, 4) == 0);
    EXPECT(amber_cursor_value(cur, 4, &v), AMBER_OK, "");
    CHECK(v.kind == AMBER_TYPE_NULL);
    EXPECT(amber_cursor_value(cur, 5, &v), AMBER_ERR_MISUSE, "out of range");
    EXPECT(amber_cursor_value(cur, 0, NULL), AMBER_ERR_NULL_POINTER, "");
    EXPECT(amber_cursor_next(cur), AMBER_DONE, "");
    EXPECT(amber_cursor_next(cur), AMBER_DONE, "stays done");
    CHECK(amber_cursor_rows_read(cur) >= 1);
    EXPECT(amber_cursor_free(cur), AMBER_OK, "");

    /* Several statements: the cursor reads the last one. */
    cur = NULL;
    OBJ_OK(amber_exec(obj, "INSERT INTO msgs (id) VALUES (8); "
                           "SELECT count(*) AS n FROM msgs",
                      NULL, 0, &cur));
    CHECK(strcmp(amber_cursor_column_name(cur, 0), "n") == 0);
    CHECK(amber_cursor_next(cur) == AMBER_ROW);
    CHECK(amber_cursor_value(cur, 0, &v) == AMBER_OK && v.integer == 2);
    amber_cursor_free(cur);
}

static void test_kv(AmberObject *obj) {
    AmberBytes val = {NULL, 0};
    bool found = true, existed = false;
    AmberKvList *list = NULL;
    AmberKvEntry e;

    OBJ_OK(amber_kv_put(obj, "user:1", 6, (const uint8_t *)"ada", 3, 0));
    OBJ_OK(amber_kv_put(obj, "user:2", 6, (const uint8_t *)"grace", 5, 0));
    OBJ_OK(amber_kv_put(obj, "user:3", 6, NULL, 0, AMBER_WRITE_NO_CACHE));
    OBJ_OK(amber_kv_put(obj, "z\0nul", 5, (const uint8_t *)"x", 1,
                        AMBER_WRITE_ALLOW_UNCONFIRMED));
    EXPECT(amber_kv_put(obj, "k", 1, NULL, 0, 0x80), AMBER_ERR_INVALID_INPUT,
           "unknown flag");

    OBJ_OK(amber_kv_get(obj, "user:2", 6, &val, &found));
    CHECK(found && val.len == 5 && memcmp(val.data, "grace", 5) == 0);
    amber_bytes_free(&val);
    CHECK(val.data == NULL && val.len == 0);
    amber_bytes_free(&val); /* a second free is a no-op */
    OBJ_OK(amber_kv_get(obj, "user:3", 6, &val, &found));
    CHECK(found && val.len == 0 && val.data == NULL);
    OBJ_OK(amber_kv_get(obj, "missing", 7, &val, &found));
    CHECK(!found && val.data == NULL);
    OBJ_OK(amber_kv_get(obj, "z\0nul", 5, &val, &found));
    CHECK(found && val.len == 1);
    amber_bytes_free(&val);

    OBJ_OK(amber_kv_delete(obj, "user:3", 6, 0, &existed));
    CHECK(existed);
    OBJ_OK(amber_kv_delete(obj, "user:3", 6, 0, &existed));
    CHECK(!existed);
    OBJ_OK(amber_kv_delete(obj, "user:9", 6, 0, NULL));

    OBJ_OK(amber_kv_list(obj, NULL, &list));
    CHECK(amber_kv_list_len(list) == 3);
    amber_kv_list_free(list);

    AmberListOptions opts;
    memset(&opts, 0, sizeof opts);
    opts.prefix = "user:";
    opts.prefix_len = 5;
    opts.reverse = true;
    opts.limit = 1;
    OBJ_OK(amber_kv_list(obj, &opts, &list));
    CHECK(amber_kv_list_len(list) == 1);
    EXPECT(amber_kv_list_entry(list, 0, &e), AMBER_OK, "");
    CHECK(e.key_len == 6 && strcmp(e.key, "user:2") == 0);
    CHECK(e.value_len == 5 && memcmp(e.value, "grace", 5) == 0);
    EXPECT(amber_kv_list_entry(list, 1, &e), AMBER_ERR_MISUSE, "");
    EXPECT(amber_kv_list_entry(list, 0, NULL), AMBER_ERR_NULL_POINTER, "");
    amber_kv_list_free(list);

    opts.prefix = "\xff";
    opts.prefix_len = 1;
    list = NULL;
    EXPECT(amber_kv_list(obj, &opts, &list), AMBER_ERR_INVALID_UTF8, "");
    CHECK(list == NULL);
}

static void test_turn_and_tickets(AmberObject *obj) {
    AmberTicket *t = NULL, *t2 = NULL;
    uint64_t seq = 0, seq2 = 0, before = 0;
    Completion c;

    OBJ_OK(amber_object_seq(obj, &before));
    OBJ_OK(amber_object_begin_turn(obj));
    EXPECT(amber_object_begin_turn(obj), AMBER_ERR_MISUSE, "second begin");
    OBJ_OK(amber_kv_put(obj, "turn", 4, (const uint8_t *)"1", 1, 0));
    OBJ_OK(amber_exec(obj, "INSERT INTO msgs (id) VALUES (9)", NULL, 0, NULL));
    OBJ_OK(amber_object_end_turn(obj, &t));
    CHECK(amber_ticket_seq(t) == before + 1);
    EXPECT(amber_ticket_wait(t, 10000, &seq), AMBER_OK, amber_ticket_errmsg(t));
    CHECK(seq == before + 1);
    EXPECT(amber_ticket_poll(t, &seq2), AMBER_OK, "");
    CHECK(seq2 == seq);

    /* Already durable: the callback runs at once, on this thread. */
    completion_init(&c);
    EXPECT(amber_ticket_on_complete(t, on_complete, &c), AMBER_OK, "");
    CHECK(c.calls == 1 && c.code == AMBER_OK && c.seq == seq &&
          c.on_caller_thread);
    completion_destroy(&c);
    EXPECT(amber_ticket_on_complete(t, NULL, NULL), AMBER_ERR_NULL_POINTER,
           "");
    EXPECT(amber_ticket_free(t), AMBER_OK, "");

    /* Pending: the callback runs on an amber syncer thread. */
    completion_init(&c);
    OBJ_OK(amber_kv_put(obj, "turn", 4, (const uint8_t *)"2", 1, 0));
    t = NULL;
    OBJ_OK(amber_object_end_turn(obj, &t));
    OBJ_OK(amber_ticket_clone(t, &t2));
    EXPECT(amber_ticket_on_complete(t, on_complete, &c), AMBER_OK, "");
    EXPECT(amber_ticket_free(t), AMBER_OK, "freed before it settles");
    CHECK(completion_wait(&c) == 1);
    CHECK(c.code == AMBER_OK && c.seq == before + 2);
    EXPECT(amber_ticket_wait(t2, -1, &seq), AMBER_OK, "");
    CHECK(seq == before + 2);
    /* Give a stray second call a chance to show up. */
    EXPECT(amber_ticket_wait(t2, 0, NULL), AMBER_OK, "");
    CHECK(c.calls == 1);
    completion_destroy(&c);
    amber_ticket_free(t2);

    /* A turn that wrote nothing gets the last commit's ticket. */
    t = NULL;
    OBJ_OK(amber_object_end_turn(obj, &t));
    CHECK(amber_ticket_seq(t) == before + 2);
    EXPECT(amber_ticket_poll(t, NULL), AMBER_OK, "");
    amber_ticket_free(t);

    /* An unconfirmed write does not hold the gate; sync covers it. */
    OBJ_OK(amber_kv_put(obj, "u", 1, (const uint8_t *)"u", 1,
                        AMBER_WRITE_ALLOW_UNCONFIRMED));
    t = NULL;
    OBJ_OK(amber_object_end_turn(obj, &t));
    CHECK(amber_ticket_seq(t) == before + 2);
    amber_ticket_free(t);
    t = NULL;
    OBJ_OK(amber_object_sync(obj, &t));
    CHECK(amber_ticket_seq(t) == before + 3);
    EXPECT(amber_ticket_wait(t, 10000, NULL), AMBER_OK, "");
    amber_ticket_free(t);
}

static void test_alarm(AmberObject *obj) {
    uint64_t ms = 1;
    bool set = true;

    OBJ_OK(amber_alarm_delete(obj));
    OBJ_OK(amber_alarm_get(obj, &ms, &set));
    CHECK(!set && ms == 0);
    OBJ_OK(amber_alarm_set(obj, 1700000000123ULL));
    OBJ_OK(amber_alarm_get(obj, &ms, &set));
    CHECK(set && ms == 1700000000123ULL);
    EXPECT(amber_alarm_set(obj, UINT64_MAX), AMBER_ERR_INVALID_INPUT, "");
    EXPECT(amber_alarm_get(obj, NULL, &set), AMBER_ERR_NULL_POINTER, "");
    OBJ_OK(amber_object_end_turn(obj, NULL));
    OBJ_OK(amber_alarm_get(obj, &ms, &set));
    CHECK(set && ms == 1700000000123ULL);
}

static void test_hostile(AmberObject *obj) {
    char key[200];
    AmberBytes val = {NULL, 0};
    bool found = false;
    AmberCursor *cur = NULL;

    EXPECT(amber_exec(obj, "SELEC nonsense FROM", NULL, 0, &cur),
           AMBER_ERR_INVALID_INPUT, "bad SQL");
    CHECK(strstr(amber_object_errmsg(obj), "syntax") != NULL);
    CHECK(cur == NULL);
    EXPECT(amber_exec(obj, "BEGIN", NULL, 0, NULL), AMBER_ERR_NOT_ALLOWED,
           "BEGIN refused");
    CHECK(strlen(amber_object_errmsg(obj)) > 0);
    EXPECT(amber_exec(obj, "SELECT * FROM _amber_kv", NULL, 0, NULL),
           AMBER_ERR_NOT_ALLOWED, "reserved table");
    EXPECT(amber_exec(obj, "ATTACH 'x.db' AS x", NULL, 0, NULL),
           AMBER_ERR_NOT_ALLOWED, "ATTACH");
    EXPECT(amber_exec(obj, "INSERT INTO msgs (id) VALUES (1)", NULL, 0, NULL),
           AMBER_OK, amber_object_errmsg(obj));
    EXPECT(amber_exec(obj, "INSERT INTO msgs (id) VALUES (1)", NULL, 0, NULL),
           AMBER_ERR_INVALID_INPUT, "constraint");

    memset(key, 'k', sizeof key);
    EXPECT(amber_kv_put(obj, key, 65, (const uint8_t *)"v", 1, 0),
           AMBER_ERR_LIMIT_EXCEEDED, "oversized key");
    CHECK(strstr(amber_object_errmsg(obj), "max_key_bytes") != NULL);
    EXPECT(amber_kv_get(obj, key, 65, &val, &found), AMBER_ERR_LIMIT_EXCEEDED,
           "");
    EXPECT(amber_kv_put(obj, key, 64, (const uint8_t *)"v", 1, 0), AMBER_OK,
           amber_object_errmsg(obj));

    /* NULL pointers. */
    EXPECT(amber_exec(NULL, "SELECT 1", NULL, 0, NULL), AMBER_ERR_NULL_POINTER,
           "");
    EXPECT(amber_exec(obj, NULL, NULL, 0, NULL), AMBER_ERR_NULL_POINTER, "");
    CHECK(strstr(amber_object_errmsg(obj), "sql") != NULL);
    EXPECT(amber_exec(obj, "SELECT ?", NULL, 1, NULL), AMBER_ERR_NULL_POINTER,
           "");
    EXPECT(amber_kv_put(obj, NULL, 3, NULL, 0, 0), AMBER_ERR_NULL_POINTER, "");
    EXPECT(amber_kv_put(obj, "k", 1, NULL, 3, 0), AMBER_ERR_NULL_POINTER, "");
    EXPECT(amber_kv_get(obj, "k", 1, NULL, &found), AMBER_ERR_NULL_POINTER,
           "");
    EXPECT(amber_kv_get(obj, "k", 1, &val, NULL), AMBER_ERR_NULL_POINTER, "");
    EXPECT(amber_kv_list(obj, NULL, NULL), AMBER_ERR_NULL_POINTER, "");
    EXPECT(amber_object_begin_turn(NULL), AMBER_ERR_NULL_POINTER, "");
    EXPECT(amber_object_end_turn(NULL, NULL), AMBER_ERR_NULL_POINTER, "");
    EXPECT(amber_ticket_wait(NULL, 0, NULL), AMBER_ERR_NULL_POINTER, "");
    EXPECT(amber_cursor_next(NULL), AMBER_ERR_NULL_POINTER, "");
    EXPECT(amber_store_open_object(NULL, "x", 1, NULL), AMBER_ERR_NULL_POINTER,
           "");
    CHECK(amber_object_name(NULL) == NULL);
    CHECK(strlen(amber_object_errmsg(NULL)) > 0);
    CHECK(amber_ticket_seq(NULL) == 0);
    CHECK(amber_kv_list_len(NULL) == 0);
    CHECK(amber_cursor_column_count(NULL) == 0);
    amber_bytes_free(NULL);

    /* Invalid UTF-8 and bad parameters. */
    EXPECT(amber_kv_put(obj, "\xff\xfe", 2, (const uint8_t *)"v", 1, 0),
           AMBER_ERR_INVALID_UTF8, "");
    EXPECT(amber_exec(obj, "SELECT '\xc3'", NULL, 0, NULL),
           AMBER_ERR_INVALID_UTF8, "");
    AmberValue bad = amber_value_text("\xc0\x80");
    EXPECT(amber_exec(obj, "SELECT ?", &bad, 1, NULL), AMBER_ERR_INVALID_UTF8,
           "");
    CHECK(strstr(amber_object_errmsg(obj), "params[0]") != NULL);
    bad.kind = 99;
    EXPECT(amber_exec(obj, "SELECT ?", &bad, 1, NULL), AMBER_ERR_INVALID_INPUT,
           "");
    AmberValue two[] = {amber_value_int(1), amber_value_int(2)};
    EXPECT(amber_exec(obj, "SELECT ?", two, 2, NULL), AMBER_ERR_INVALID_INPUT,
           "too many params");
    EXPECT(amber_exec(obj, "SELECT ?, ?", two, 1, NULL),
           AMBER_ERR_INVALID_INPUT, "too few params");

    /* None of it harmed the object. */
    CHECK(query_int(obj, "SELECT 40 + 2") == 42);
    OBJ_OK(amber_object_end_turn(obj, NULL));
}

/* ---- threads ------------------------------------------------------------ */

typedef struct {
    AmberObject *obj;
    AmberCode put;
    AmberCode free_code;
} Intruder;

static void *intrude(void *arg) {
    Intruder *in = arg;
    in->put = amber_kv_put(in->obj, "x", 1, (const uint8_t *)"y", 1, 0);
    in->free_code = amber_object_free(in->obj);
    return NULL;
}

typedef struct {
    AmberObject *obj;
    int ok;
    int busy;
    int other;
} Hammer;

static void *hammer(void *arg) {
    Hammer *h = arg;
    for (int i = 0; i < 300; i++) {
        AmberBytes v = {NULL, 0};
        bool found = false;
        AmberCode rc = amber_kv_get(h->obj, "user:1", 6, &v, &found);
        if (rc == AMBER_OK) {
            h->ok++;
            amber_bytes_free(&v);
        } else if (rc == AMBER_ERR_BUSY) {
            h->busy++;
        } else {
            h->other++;
        }
    }
    return NULL;
}

typedef struct {
    AmberTicket *ticket;
    AmberCode code;
    uint64_t seq;
} Waiter;

static void *wait_elsewhere(void *arg) {
    Waiter *w = arg;
    w->code = amber_ticket_wait(w->ticket, 10000, &w->seq);
    amber_ticket_free(w->ticket);
    return NULL;
}

static void test_threads(AmberObject *obj) {
    pthread_t th, th2;
    Intruder in = {obj, 0, 0};

    /* Another thread during this thread's turn: BUSY, not a race. */
    OBJ_OK(amber_object_begin_turn(obj));
    pthread_create(&th, NULL, intrude, &in);
    pthread_join(th, NULL);
    CHECK(in.put == AMBER_ERR_BUSY);
    CHECK(in.free_code == AMBER_ERR_BUSY);
    OBJ_OK(amber_object_end_turn(obj, NULL));

    /* Two threads at once without turns: each call succeeds or is BUSY. */
    Hammer h1 = {obj, 0, 0, 0}, h2 = {obj, 0, 0, 0};
    pthread_create(&th, NULL, hammer, &h1);
    pthread_create(&th2, NULL, hammer, &h2);
    pthread_join(th, NULL);
    pthread_join(th2, NULL);
    CHECK(h1.ok + h1.busy == 300 && h1.other == 0);
    CHECK(h2.ok + h2.busy == 300 && h2.other == 0);
    CHECK(h1.ok > 0 || h2.ok > 0);
    printf("hammer: %d ok, %d busy\n", h1.ok + h2.ok, h1.busy + h2.busy);

    /* Between turns the handle may move; a ticket may cross threads. */
    Waiter w = {NULL, -1, 0};
    OBJ_OK(amber_kv_put(obj, "moved", 5, (const uint8_t *)"1", 1, 0));
    OBJ_OK(amber_object_end_turn(obj, &w.ticket));
    uint64_t want = amber_ticket_seq(w.ticket);
    pthread_create(&th, NULL, wait_elsewhere, &w);
    pthread_join(th, NULL);
    CHECK(w.code == AMBER_OK && w.seq == want);
}

/* ---- close and reopen --------------------------------------------------- */

static void test_close_and_reopen(AmberStore *store, AmberObject *obj) {
    uint64_t seq = 0, seq2 = 0;
    AmberBytes val = {NULL, 0};
    bool found = false;
    AmberObject *again = NULL;

    /* One handle per object: a second open is refused while it is open. */
    EXPECT(amber_store_open_object(store, "room-1", 6, &again),
           AMBER_ERR_LOCKED, amber_store_errmsg(store));
    CHECK(again == NULL);

    OBJ_OK(amber_kv_put(obj, "last", 4, (const uint8_t *)"words", 5, 0));
    OBJ_OK(amber_object_close(obj, &seq));
    CHECK(seq > 0);
    EXPECT(amber_kv_get(obj, "last", 4, &val, &found), AMBER_ERR_CLOSED, "");
    EXPECT(amber_object_close(obj, NULL), AMBER_ERR_CLOSED, "");
    CHECK(strcmp(amber_object_name(obj), "room-1") == 0);
    EXPECT(amber_object_free(obj), AMBER_OK, "");

    obj = open_object(store, "room-1");
    OBJ_OK(amber_object_seq(obj, &seq2));
    CHECK(seq2 == seq);
    OBJ_OK(amber_kv_get(obj, "last", 4, &val, &found));
    CHECK(found && val.len == 5 && memcmp(val.data, "words", 5) == 0);
    amber_bytes_free(&val);
    CHECK(query_int(obj, "SELECT count(*) FROM msgs") == 4);
    /* Uncommitted writes are dropped by a free without close. */
    OBJ_OK(amber_kv_put(obj, "dropped", 7, (const uint8_t *)"x", 1, 0));
    EXPECT(amber_object_free(obj), AMBER_OK, "");
    obj = open_object(store, "room-1");
    OBJ_OK(amber_kv_get(obj, "dropped", 7, &val, &found));
    CHECK(!found);
    OBJ_OK(amber_object_close(obj, NULL));
    amber_object_free(obj);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
        return 2;
    }
    AmberStore *store = test_open(argv[1]);
    if (store == NULL) {
        fprintf(stderr, "cannot open the store; giving up\n");
        return 1;
    }
    AmberStore *store2 = NULL;
    EXPECT(amber_store_clone(store, &store2), AMBER_OK, "");

    AmberObject *obj = open_object(store2, "room-1");
    if (obj == NULL) {
        return 1;
    }
    CHECK(strcmp(amber_object_name(obj), "room-1") == 0);
    EXPECT(amber_store_free(store2), AMBER_OK, "the object keeps it alive");

    test_sql(obj);
    test_kv(obj);
    test_turn_and_tickets(obj);
    test_alarm(obj);
    test_hostile(obj);
    test_threads(obj);
    test_close_and_reopen(store, obj);
    test_pitr(argv[1]);

    /* The store lists its objects: names, with their ids as values. */
    AmberKvList *objects = NULL;
    AmberKvEntry e;
    EXPECT(amber_store_list_objects(store, &objects), AMBER_OK,
           amber_store_errmsg(store));
    CHECK(amber_kv_list_len(objects) == 1);
    CHECK(amber_kv_list_entry(objects, 0, &e) == AMBER_OK &&
          strcmp(e.key, "room-1") == 0 && e.value_len == 64);
    amber_kv_list_free(objects);
    EXPECT(amber_store_list_objects(store, NULL), AMBER_ERR_NULL_POINTER, "");

    /* Deleting: refused while open, then gone for good, then nothing. */
    AmberObject *doomed = NULL;
    int deleted = -1;
    EXPECT(amber_store_open_object(store, "doomed", 6, &doomed), AMBER_OK,
           amber_store_errmsg(store));
    EXPECT(amber_store_delete_object(store, "doomed", 6, 1, &deleted),
           AMBER_ERR_LOCKED, "");
    CHECK(amber_object_free(doomed) == AMBER_OK);
    EXPECT(amber_store_delete_object(store, "doomed", 6, 1, &deleted), AMBER_OK,
           amber_store_errmsg(store));
    CHECK(deleted == 1);
    EXPECT(amber_store_delete_object(store, "doomed", 6, 0, &deleted), AMBER_OK,
           amber_store_errmsg(store));
    CHECK(deleted == 0);
    EXPECT(amber_store_delete_object(store, "doomed", 6, 0, NULL), AMBER_OK, "");
    EXPECT(amber_store_list_objects(store, &objects), AMBER_OK,
           amber_store_errmsg(store));
    CHECK(amber_kv_list_len(objects) == 1);
    amber_kv_list_free(objects);

    /* Every free accepts NULL. */
    CHECK(amber_config_free(NULL) == AMBER_OK);
    CHECK(amber_store_free(NULL) == AMBER_OK);
    CHECK(amber_object_free(NULL) == AMBER_OK);
    CHECK(amber_cursor_free(NULL) == AMBER_OK);
    CHECK(amber_ticket_free(NULL) == AMBER_OK);
    amber_kv_list_free(NULL);

    EXPECT(amber_store_free(store), AMBER_OK, "");
    printf("capi_test: %d passed, %d failed\n", checks - failures, failures);
    return failures == 0 ? 0 : 1;
}
