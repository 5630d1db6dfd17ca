/* http: what a connection's request head asks for: the WebSocket upgrade of /ws and /echo
 * (who the client is: a bearer token or ?user=), GET /healthz, GET /metrics, POST
 * /publish/<channel> for backends, and --static files. Answers go out through the transport
 * (conn.h), which closes the connection after them. */
#ifndef HTTP_H
#define HTTP_H

#include "conn.h"
#include "ws_http.h"

/* Answers request head req of c, or its parse error (parsed: ws_http_parse's result, never
 * WS_HTTP_PARTIAL): the worker's on_request. */
void http_request(conn *c, int parsed, const ws_http_req *req);

#endif
