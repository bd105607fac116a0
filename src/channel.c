/* channel.c - the operations of every channel, and keeping replies
** (see channel.h). */
#include "channel.h"
#include "shm.h"

int ppe_reply_keep(ppe_reply *r, ppe_task *t) {
  ppe_task_drop_res(t);
  t->res_text = 0;
  switch (r->held) {
    case PPE_HELD_LENT:  /* read where it is, returned once decoded */
      t->res.p = r->lent;
      t->res.len = sizeof(r->f) + (size_t)r->f.len;
      t->res_off = sizeof(r->f);
      t->res_peer = r->peer;
      ppe_peer_ref(r->peer);
      return 0;
    case PPE_HELD_BUF:  /* a large one: no copy, and no buffer to grow */
      t->res = *r->buf;
      t->res_off = sizeof(r->f);
      r->buf->p = NULL;
      r->buf->len = r->buf->cap = 0;
      return 0;
    default:
      return ppe_task_set_res(t, r->payload, (size_t)r->f.len);
  }
}

void ppe_reply_drop(ppe_reply *r) {
  if (r->held == PPE_HELD_LENT)
    ppe_shm_return(r->lent, sizeof(r->f) + (size_t)r->f.len);
}

void ppe_chan_send(ppe_chan *ch, ppe_task *t) {
  ch->ops->send(ch, t);
}

void ppe_chan_send_init(ppe_chan *ch, const ppe_buf *init) {
  ch->ops->send_init(ch, init);
}

int ppe_chan_push(ppe_chan *ch) {
  return ch->ops->push(ch);
}

void ppe_chan_stop(ppe_chan *ch) {
  ch->ops->stop(ch);
}

int ppe_chan_read(ppe_chan *ch) {
  return ch->ops->read(ch);
}

int ppe_chan_take(ppe_chan *ch, ppe_reply_fn fn, void *ud) {
  return ch->ops->take(ch, fn, ud);
}

int ppe_chan_takes_back(const ppe_chan *ch) {
  return ch->ops->takes_back(ch);
}

int ppe_chan_take_back(ppe_chan *ch, ppe_task *t) {
  return ch->ops->take_back(ch, t);
}

int ppe_chan_cancel(ppe_chan *ch, ppe_task *t) {
  return ch->ops->cancel(ch, t);
}

int ppe_chan_sleep(ppe_chan *ch) {
  return ch->ops->sleep(ch);
}

void ppe_chan_wake(ppe_chan *ch) {
  ch->ops->wake(ch);
}

int ppe_chan_holding(const ppe_chan *ch) {
  return ch != NULL && ch->ops->holding(ch);
}

int ppe_chan_left(const ppe_chan *ch) {
  return ch->ops->left(ch);
}

void ppe_chan_end(ppe_chan *ch) {
  ch->ops->end(ch);
}

void ppe_chan_free(ppe_chan *ch) {
  if (ch != NULL) ch->ops->free(ch);
}
