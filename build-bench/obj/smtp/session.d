build-bench/obj/smtp/session.o: src/smtp/session.c src/smtp/session.h \
 src/conf/conf.h src/conf/params.def src/deliver/maildir.h \
 src/deliver/pool.h src/log/log.h src/net/peername.h src/net/server.h \
 src/policy/addrlist.h src/policy/anvil.h src/policy/recipient.h \
 src/smtp/address.h src/smtp/dataread.h src/util/buf.h \
 src/smtp/linereader.h src/smtp/reply.h src/smtp/replies.def \
 src/util/xalloc.h
src/smtp/session.h:
src/conf/conf.h:
src/conf/params.def:
src/deliver/maildir.h:
src/deliver/pool.h:
src/log/log.h:
src/net/peername.h:
src/net/server.h:
src/policy/addrlist.h:
src/policy/anvil.h:
src/policy/recipient.h:
src/smtp/address.h:
src/smtp/dataread.h:
src/util/buf.h:
src/smtp/linereader.h:
src/smtp/reply.h:
src/smtp/replies.def:
src/util/xalloc.h:
