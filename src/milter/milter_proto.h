/*
 * milter_proto: the MTA side of the Sendmail milter protocol, version 6, as
 * Postfix 3.7 speaks it (milter8.c): the packets mxgate sends, the option
 * negotiation, and a bounds-checked reader and decoder of every packet a
 * filter sends back.  No I/O, no libevent: milter/milter_client.h drives it
 * on a worker's loop; the unit test and the fuzzer drive it in memory.
 *
 * On the wire every packet is a 4-byte length in network order (the
 * command byte plus the data), the command byte, then the data.  Strings
 * are NUL-terminated; "long" is 32 bits in network order; the CONNECT
 * port is 16 bits in network order.
 *
 * THREADS: none of its own; every function works on the caller's objects.
 */
#ifndef MXGATE_MILTER_MILTER_PROTO_H
#define MXGATE_MILTER_MILTER_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Commands, MTA to filter (libmilter's mfdef.h names). */
#define SMFIC_ABORT	'A'
#define SMFIC_BODY	'B'
#define SMFIC_CONNECT	'C'
#define SMFIC_MACRO	'D'
#define SMFIC_BODYEOB	'E'
#define SMFIC_HELO	'H'
#define SMFIC_QUIT_NC	'K'
#define SMFIC_HEADER	'L'
#define SMFIC_MAIL	'M'
#define SMFIC_EOH	'N'
#define SMFIC_OPTNEG	'O'
#define SMFIC_QUIT	'Q'
#define SMFIC_RCPT	'R'
#define SMFIC_DATA	'T'
#define SMFIC_UNKNOWN	'U'

/* Replies, filter to MTA. */
#define SMFIR_ADDRCPT	'+'
#define SMFIR_DELRCPT	'-'
#define SMFIR_ADDRCPT_PAR '2'
#define SMFIR_SHUTDOWN	'4'
#define SMFIR_ACCEPT	'a'
#define SMFIR_REPLBODY	'b'
#define SMFIR_CONTINUE	'c'
#define SMFIR_DISCARD	'd'
#define SMFIR_CHGFROM	'e'
#define SMFIR_CONN_FAIL	'f'
#define SMFIR_ADDHEADER	'h'
#define SMFIR_INSHEADER	'i'
#define SMFIR_SETSYMLIST 'l'
#define SMFIR_CHGHEADER	'm'
#define SMFIR_PROGRESS	'p'
#define SMFIR_QUARANTINE 'q'
#define SMFIR_REJECT	'r'
#define SMFIR_SKIP	's'
#define SMFIR_TEMPFAIL	't'
#define SMFIR_REPLYCODE	'y'

/* Protocol flags (OPTNEG's third long): events not sent, replies not sent. */
#define SMFIP_NOCONNECT	(1u << 0)
#define SMFIP_NOHELO	(1u << 1)
#define SMFIP_NOMAIL	(1u << 2)
#define SMFIP_NORCPT	(1u << 3)
#define SMFIP_NOBODY	(1u << 4)
#define SMFIP_NOHDRS	(1u << 5)
#define SMFIP_NOEOH	(1u << 6)
#define SMFIP_NR_HDR	(1u << 7)	/* also "no_header_reply" */
#define SMFIP_NOUNKNOWN	(1u << 8)
#define SMFIP_NODATA	(1u << 9)
#define SMFIP_SKIP	(1u << 10)
#define SMFIP_RCPT_REJ	(1u << 11)
#define SMFIP_NR_CONN	(1u << 12)
#define SMFIP_NR_HELO	(1u << 13)
#define SMFIP_NR_MAIL	(1u << 14)
#define SMFIP_NR_RCPT	(1u << 15)
#define SMFIP_NR_DATA	(1u << 16)
#define SMFIP_NR_UNKN	(1u << 17)
#define SMFIP_NR_EOH	(1u << 18)
#define SMFIP_NR_BODY	(1u << 19)
#define SMFIP_HDR_LEADSPC (1u << 20)

#define SMFIP_NOSEND_MASK (SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT \
			   | SMFIP_NOBODY | SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NOUNKNOWN \
			   | SMFIP_NODATA)
#define SMFIP_NOREPLY_MASK (SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT \
			    | SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_HDR | SMFIP_NR_EOH \
			    | SMFIP_NR_BODY)

/* Actions (OPTNEG's second long): what the filter may ask for at end of message. */
#define SMFIF_ADDHDRS	(1u << 0)
#define SMFIF_CHGBODY	(1u << 1)
#define SMFIF_ADDRCPT	(1u << 2)
#define SMFIF_DELRCPT	(1u << 3)
#define SMFIF_CHGHDRS	(1u << 4)
#define SMFIF_QUARANTINE (1u << 5)
#define SMFIF_CHGFROM	(1u << 6)
#define SMFIF_ADDRCPT_PAR (1u << 7)
#define SMFIF_SETSYMLIST (1u << 8)

/* Every action Postfix 3.7 offers (milter8_connect()'s my_actions). */
#define MILTER_MTA_ACTIONS (SMFIF_ADDHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT | SMFIF_DELRCPT \
			    | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_CHGFROM \
			    | SMFIF_ADDRCPT_PAR | SMFIF_SETSYMLIST)

/* CONNECT address families. */
#define SMFIA_UNKNOWN	'U'
#define SMFIA_UNIX	'L'
#define SMFIA_INET	'4'
#define SMFIA_INET6	'6'

/* Macro stages of SETSYMLIST (and of the OPTNEG reply's macro lists). */
enum milter_stage {
	SMFIM_CONNECT = 0, SMFIM_HELO = 1, SMFIM_ENVFROM = 2, SMFIM_ENVRCPT = 3,
	SMFIM_DATA = 4, SMFIM_EOM = 5, SMFIM_EOH = 6,
};
#define MILTER_STAGES 7

/* Body bytes per BODY packet (Postfix's MILTER_CHUNK_SIZE). */
#define MILTER_CHUNK_SIZE 65535
/*
 * The largest packet accepted from a filter.  Postfix takes up to INT_MAX/2;
 * mxgate bounds what a filter can make it hold (a REPLBODY chunk from
 * libmilter is at most 65535 bytes; headers and replies are far smaller).
 */
#define MILTER_PACKET_MAX ((size_t)4 * 1024 * 1024)

/* Postfix's name for a command or reply code ("SMFIC_HELO", "SMFIR_ACCEPT"), or NULL. */
const char *milter_cmd_name(int cmd);
const char *milter_reply_name(int cmd);

/* ---- encoding: each appends one whole packet to out ---- */

/* SMFIC_OPTNEG: version, the actions offered, the protocol flags offered. */
void	milter_put_optneg(struct buf *out, uint32_t version, uint32_t actions, uint32_t protocol);
/*
 * SMFIC_MACRO for the event cmd (SMFIC_CONNECT ...): namevals is name,
 * value, name, value ..., n strings in all (n even; 0 sends the event code
 * alone, as Postfix does for an empty list).
 */
void	milter_put_macros(struct buf *out, int cmd, const char *const *namevals, size_t n);
/*
 * SMFIC_CONNECT: the host name (Sendmail's form: "[addr]" when unknown),
 * the family (SMFIA_*), the port and the address; family SMFIA_UNKNOWN
 * sends neither port nor address.
 */
void	milter_put_connect(struct buf *out, const char *host, int family, unsigned port,
			   const char *addr);
/* SMFIC_HELO, SMFIC_UNKNOWN: one string. */
void	milter_put_string(struct buf *out, int cmd, const char *s);
/* SMFIC_MAIL, SMFIC_RCPT: the address ("<a@b>") then each ESMTP parameter. */
void	milter_put_argv(struct buf *out, int cmd, const char *const *argv, size_t n);
/* SMFIC_HEADER: name, value. */
void	milter_put_header(struct buf *out, const char *name, const char *value);
/* SMFIC_BODY: n bytes (1..MILTER_CHUNK_SIZE), as they are. */
void	milter_put_body(struct buf *out, const void *data, size_t n);
/* A command without data: DATA, EOH, BODYEOB, ABORT, QUIT, QUIT_NC. */
void	milter_put_empty(struct buf *out, int cmd);

/* ---- option negotiation ---- */

/*
 * milter_protocol as Postfix reads it: one version ("2", "3", "4", "6") and
 * optionally "no_header_reply", separated by commas or spaces.  0 and
 * *version_r, *events_r (the protocol flags mxgate offers), or -1 with the
 * warning Postfix logs in *err_r ("bad protocol information: X", "no
 * protocol version information"; caller frees).
 */
int	milter_protocol_parse(const char *spec, uint32_t *version_r, uint32_t *events_r,
			      char **err_r);
/*
 * The events mxgate must not send at all for its version (Postfix's
 * np_mask), before and after the filter answered with its own version.
 */
uint32_t milter_np_mask(uint32_t my_events);
uint32_t milter_np_mask_for(uint32_t np_mask, uint32_t filter_version);

/* ---- reading: packets, incrementally ---- */

enum milter_read_status {
	MILTER_READ_MORE,	/* every byte taken; feed more */
	MILTER_READ_PACKET,	/* one packet is complete: r->cmd, r->data */
	MILTER_READ_ERROR,	/* *why_r: Postfix's warning text */
};

struct milter_reader {
	unsigned char hdr[4];
	size_t	hlen;		/* length bytes seen */
	size_t	want;		/* the packet's length (command + data) */
	bool	have_cmd;
	int	cmd;		/* the command byte of the packet */
	struct buf data;	/* its data so far (always NUL-terminated) */
	bool	done;		/* the last call returned PACKET */
	char	why[100];	/* the text of an ERROR */
};

void	milter_reader_init(struct milter_reader *r);
void	milter_reader_free(struct milter_reader *r);
/*
 * Feed n bytes; *used_r is how many were taken: PACKET stops at the end of
 * the packet (the rest is the next packet's), MORE takes all.  After
 * PACKET, r->cmd and r->data hold it until the next call, which starts the
 * next packet.  ERROR: a length below 1 ("bad packet length: N") or above
 * MILTER_PACKET_MAX ("unreasonable packet length: N > MAX").
 */
enum milter_read_status milter_read(struct milter_reader *r, const void *data, size_t n,
				    size_t *used_r, const char **why_r);

/* ---- decoding one packet ---- */

struct milter_symlist {
	uint32_t stage;		/* SMFIM_*; other values are kept for the warning */
	const char *names;	/* space-separated macro names */
};

/*
 * One packet from a filter, decoded.  Strings point into the packet's data
 * (the reader's buffer), valid until the next milter_read().
 */
struct milter_reply {
	int	cmd;
	/* SMFIC_OPTNEG */
	uint32_t version, actions, protocol;
	struct milter_symlist syms[16];
	size_t	nsyms;
	/* CHGHEADER, INSHEADER: the index as sent (Postfix maps CHGHEADER 0 to 1) */
	uint32_t index;
	/*
	 * ADDHEADER, INSHEADER, CHGHEADER: name and value.  CHGFROM, ADDRCPT,
	 * ADDRCPT_PAR, DELRCPT: name is the address, value its ESMTP
	 * arguments ("" when none).  QUARANTINE: name is the reason.
	 * REPLYCODE: name is the reply with Postfix's '%' rule applied.
	 */
	const char *name, *value;
	/* REPLBODY: the chunk as sent (CRLF line ends) */
	const char *body;
	size_t	body_len;
};

/*
 * Decode the packet r holds.  0: *rep is filled; -1: *why_r is Postfix's
 * warning (static text, or written into why_buf).  Checks every length:
 * packets too short for a long or a string, strings without their NUL,
 * data left over, a REPLYCODE that is not "4XX " / "5XX " (or "-") with a
 * matching enhanced status code, a CHGHEADER with an empty name, and data
 * after a reply that takes none ("reply X was followed by N data bytes").
 * A reply code mxgate does not know is decoded (cmd set) for the caller
 * to refuse after its event.
 */
int	milter_decode(struct milter_reader *r, struct milter_reply *rep, char *why_buf,
		      size_t why_size, const char **why_r);

#endif
