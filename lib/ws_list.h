/* ws_list: the one intrusive doubly-linked list of the tree, as libuv's queue.h. The owner
 * embeds a ws_list in its struct and links it into a head; ws_container_of gets the struct
 * back. A head is circular (ws_list_init). A node on no list has next == NULL, so a zeroed
 * struct starts unlinked. No allocation, no I/O. */
#ifndef WS_LIST_H
#define WS_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ws_list {
    struct ws_list *next, *prev;
} ws_list;

/* The struct of type `type` whose member `member` is at p. */
#define ws_container_of(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

static inline void ws_list_init(ws_list *head) { head->next = head->prev = head; }

static inline bool ws_list_empty(const ws_list *head) { return head->next == head; }

/* True if node n is on a list. */
static inline bool ws_list_linked(const ws_list *n) { return n->next != NULL; }

/* Links n (on no list) at the tail of head. */
static inline void ws_list_push(ws_list *head, ws_list *n)
{
    n->next = head;
    n->prev = head->prev;
    head->prev->next = n;
    head->prev = n;
}

/* Unlinks n if it is on a list. */
static inline void ws_list_remove(ws_list *n)
{
    if (!n->next)
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = NULL;
}

/* The first node of head, or NULL if it is empty. */
static inline ws_list *ws_list_first(const ws_list *head)
{
    return head->next == head ? NULL : head->next;
}

/* The node after n on head, or NULL at the end. */
static inline ws_list *ws_list_after(const ws_list *head, const ws_list *n)
{
    return n->next == head ? NULL : n->next;
}

/* Walks head; the body may unlink `it` but nothing else. */
#define ws_list_each(it, head)                                                                 \
    for (ws_list *it = (head)->next, *it##_next = it->next; it != (head);                      \
         it = it##_next, it##_next = it->next)

#endif
