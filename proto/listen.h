/*
 * listen.h — the HTTP listeners' address ("IPv4:PORT" or "[IPv6]:PORT",
 * a numeric host), as the gateway's --listen and tokend's
 * --metrics-listen take it.
 */
#ifndef TOKEND_LISTEN_H
#define TOKEND_LISTEN_H

#include <stdbool.h>
#include <sys/socket.h>

/* Parses `listen` into *ss (zeroed first) and whether it is IPv6 into
 * *v6. False for NULL, a host that is not a numeric address, a host
 * longer than 63 bytes, or a port that is not 0..65535 in at most five
 * digits. */
bool listen_addr_parse(const char *listen, struct sockaddr_storage *ss, bool *v6);

#endif /* TOKEND_LISTEN_H */
