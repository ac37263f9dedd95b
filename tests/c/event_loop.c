/*
 * A minimal runtime event loop on amber's C ABI.
 *
 * - Each request runs as one turn on its object.
 * - Its reply is held until the turn's ticket is durable (the output gate);
 *   a ticket callback wakes the loop through a pipe.
 * - The object's alarm sets the loop's poll() timeout; when it is due, the
 *   alarm handler runs as a turn of its own.
 *
 * Build: cc -std=c11 -Iinclude event_loop.c libamber.a -lpthread -ldl -lm
 * Run:   ./a.out DATA_DIR
 */
#define _POSIX_C_SOURCE 200809L

#include "amber.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A reply waiting for its turn's commit to become durable. */
typedef struct Reply {
    struct Reply *next;
    AmberTicket *ticket;
    char text[64];
} Reply;

/* Ticket callbacks write a byte here; the loop polls the read end. */
static int wake[2];

/* Runs on an amber syncer thread: it only wakes the loop. */
static void on_durable(void *user_data, AmberCode code, uint64_t seq,
                       const char *message) {
    char byte = 1;
    (void)user_data, (void)code, (void)seq, (void)message;
    if (write(wake[1], &byte, 1) < 0) {
        /* The pipe is full: the loop is awake anyway. */
    }
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A request: count the visit and arm a follow-up alarm, in one turn. */
static AmberCode handle_request(AmberObject *obj, const char *user,
                                Reply **held) {
    AmberTicket *ticket = NULL;
    AmberValue params[] = {amber_value_text(user)};
    AmberCode rc = amber_object_begin_turn(obj);
    if (rc != AMBER_OK) {
        return rc;
    }
    rc = amber_exec(obj,
                    "INSERT INTO visits (user, n) VALUES (?1, 1) "
                    "ON CONFLICT (user) DO UPDATE SET n = n + 1",
                    params, 1, NULL);
    if (rc == AMBER_OK) {
        rc = amber_alarm_set(obj, now_ms() + 20);
    }
    /* Always end the turn: it commits and releases the thread binding. */
    AmberCode end = amber_object_end_turn(obj, &ticket);
    if (rc == AMBER_OK) {
        rc = end;
    }
    if (rc != AMBER_OK) {
        amber_ticket_free(ticket);
        return rc;
    }
    Reply *reply = calloc(1, sizeof *reply);
    if (reply == NULL) {
        amber_ticket_free(ticket);
        return AMBER_ERR_INTERNAL;
    }
    snprintf(reply->text, sizeof reply->text, "hello, %s", user);
    reply->ticket = ticket;
    reply->next = *held;
    *held = reply;
    return amber_ticket_on_complete(ticket, on_durable, NULL);
}

/* The output gate: sends every reply whose commit is durable. */
static int release_replies(Reply **held) {
    int sent = 0;
    Reply **link = held;
    while (*link != NULL) {
        Reply *r = *link;
        AmberCode rc = amber_ticket_poll(r->ticket, NULL);
        if (rc == AMBER_PENDING) {
            link = &r->next;
            continue;
        }
        if (rc == AMBER_OK) {
            printf("reply: %s\n", r->text);
        } else {
            /* The commit failed: the reply must not go out. */
            printf("error: %s\n", amber_ticket_errmsg(r->ticket));
        }
        *link = r->next;
        amber_ticket_free(r->ticket);
        free(r);
        sent++;
    }
    return sent;
}

/* The alarm handler: a turn that deletes the alarm with its work, so a
 * crash before the commit leaves the alarm set and it fires again. */
static AmberCode fire_alarm(AmberObject *obj) {
    AmberCursor *cur = NULL;
    AmberValue total;
    AmberCode rc = amber_object_begin_turn(obj);
    if (rc != AMBER_OK) {
        return rc;
    }
    rc = amber_alarm_delete(obj);
    if (rc == AMBER_OK) {
        rc = amber_exec(obj, "SELECT sum(n) FROM visits", NULL, 0, &cur);
    }
    if (rc == AMBER_OK && amber_cursor_next(cur) == AMBER_ROW &&
        amber_cursor_value(cur, 0, &total) == AMBER_OK) {
        printf("alarm: %lld visits so far\n", (long long)total.integer);
    }
    amber_cursor_free(cur);
    AmberCode end = amber_object_end_turn(obj, NULL);
    return rc == AMBER_OK ? end : rc;
}

int main(int argc, char **argv) {
    const char *requests[] = {"ada", "grace", "ada"};
    const int n_requests = 3;
    AmberConfig *config = NULL;
    AmberStore *store = NULL;
    AmberObject *obj = NULL;
    Reply *held = NULL;
    int next = 0, sent = 0, alarms = 0, status = 1;

    if (argc != 2 || pipe(wake) != 0) {
        fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
        return 2;
    }
    fcntl(wake[1], F_SETFL, O_NONBLOCK);
    if (amber_config_new(argv[1], &config) != AMBER_OK) {
        return 1;
    }
    if (amber_store_open(config, &store) != AMBER_OK) {
        fprintf(stderr, "open: %s\n", amber_config_errmsg(config));
        amber_config_free(config);
        return 1;
    }
    amber_config_free(config);
    if (amber_store_open_object(store, "counter", strlen("counter"), &obj) !=
        AMBER_OK) {
        fprintf(stderr, "open object: %s\n", amber_store_errmsg(store));
        goto out;
    }
    if (amber_exec(obj,
                   "CREATE TABLE IF NOT EXISTS visits "
                   "(user TEXT PRIMARY KEY, n INTEGER NOT NULL)",
                   NULL, 0, NULL) != AMBER_OK ||
        amber_object_end_turn(obj, NULL) != AMBER_OK) {
        fprintf(stderr, "schema: %s\n", amber_object_errmsg(obj));
        goto out;
    }

    /* The loop runs until every request is answered and no alarm is set. */
    for (int round = 0; round < 1000; round++) {
        uint64_t at = 0;
        bool alarm_set = false;
        int timeout = -1;

        if (next < n_requests) {
            /* Stands in for reading a request off the network. */
            if (handle_request(obj, requests[next++], &held) != AMBER_OK) {
                fprintf(stderr, "request: %s\n", amber_object_errmsg(obj));
                goto out;
            }
        }
        if (amber_alarm_get(obj, &at, &alarm_set) != AMBER_OK) {
            goto out;
        }
        if (next == n_requests && held == NULL && !alarm_set) {
            status = alarms > 0 && sent == n_requests ? 0 : 1;
            break;
        }
        if (next < n_requests) {
            timeout = 0;
        } else if (alarm_set) {
            uint64_t now = now_ms();
            timeout = at > now ? (int)(at - now) : 0;
        }
        if (held != NULL && (timeout < 0 || timeout > 1000)) {
            timeout = 1000; /* a missed wake-up costs a second, not a hang */
        }

        struct pollfd pfd = {wake[0], POLLIN, 0};
        if (poll(&pfd, 1, timeout) > 0) {
            char drain[64];
            if (read(wake[0], drain, sizeof drain) < 0) {
                goto out;
            }
        }
        sent += release_replies(&held);
        if (alarm_set && at <= now_ms()) {
            if (fire_alarm(obj) != AMBER_OK) {
                fprintf(stderr, "alarm: %s\n", amber_object_errmsg(obj));
                goto out;
            }
            alarms++;
        }
    }

out:
    while (held != NULL) {
        Reply *r = held;
        held = r->next;
        amber_ticket_free(r->ticket);
        free(r);
    }
    if (obj != NULL && amber_object_close(obj, NULL) != AMBER_OK) {
        fprintf(stderr, "close: %s\n", amber_object_errmsg(obj));
        status = 1;
    }
    amber_object_free(obj);
    amber_store_free(store);
    close(wake[0]);
    close(wake[1]);
    printf("event loop: %d replies, %d alarms\n", sent, alarms);
    return status;
}
