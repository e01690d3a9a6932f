# cython: language_level=3
"""TLS for the listeners, on OpenSSL directly: one C object per connection between
the TCP transport and the connection's protocol.

PERF (bench/load/instructions.py --tls, callgrind): under uvloop's TLS transport a
proxied GET 1 KB cost ~48k instructions against nginx's ~40k with the same
certificate and cipher, though the plain path is at parity (~19k each). The ~9k
beyond OpenSSL's own work were the layers around it: the ssl module's objects and
memory BIOs, a bytes per record, an SSLWantReadError raised and caught to end
every read, and a transport write for the ciphertext on top of the one for the
plaintext. Here a read is: ciphertext into a memory BIO, SSL_read until it wants
more, one data_received with what it gave; a write is SSL_write, then the
ciphertext written on the socket (or queued on the TCP transport when it holds
some already), as nginx does with its own BIOs.

What the protocol above sees is the asyncio transport interface it uses (write,
writelines, close, abort, pause/resume_reading, get_extra_info, ...), as it saw
uvloop's TLS transport: it is told connection_made once the handshake is done,
eof_received when the client sends close_notify (or half-closes TCP),
connection_lost when the TCP connection is gone. Like uvloop's TLS transport, it
can not be half-closed (can_write_eof() is False).

Built when OpenSSL's headers are found (setup.py); without them, or with
RUNMCP_TLS=python, the listeners use the event loop's TLS (listeners.py).
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE

import logging
from ssl import SSLError

_log = logging.getLogger("runmcp_fast.tls")


cdef extern from "openssl/ssl.h" nogil:
    ctypedef struct SSL_CTX
    ctypedef struct SSL
    ctypedef struct SSL_METHOD
    ctypedef struct BIO
    ctypedef struct BIO_METHOD
    ctypedef struct SSL_CIPHER

    const SSL_METHOD* TLS_server_method()
    const SSL_METHOD* TLS_client_method()
    ctypedef struct SSL_SESSION
    long SSL_CTX_set_session_cache_mode(SSL_CTX* ctx, long mode)
    long SSL_SESS_CACHE_CLIENT, SSL_SESS_CACHE_NO_INTERNAL_STORE
    SSL_CTX* SSL_get_SSL_CTX(const SSL* ssl)
    int SSL_CTX_set_app_data(SSL_CTX* ctx, void* arg)
    void* SSL_CTX_get_app_data(const SSL_CTX* ctx)
    int SSL_set_session(SSL* ssl, SSL_SESSION* session)
    void SSL_SESSION_free(SSL_SESSION* session)
    int SSL_SESSION_is_resumable(const SSL_SESSION* session)
    int SSL_session_reused(const SSL* ssl)
    int SSL_CTX_set_default_verify_paths(SSL_CTX* ctx)
    void SSL_CTX_set_verify(SSL_CTX* ctx, int mode, void* callback)
    int SSL_VERIFY_PEER
    void SSL_set_connect_state(SSL* ssl)
    long SSL_set_tlsext_host_name(SSL* ssl, const char* name)
    int SSL_set1_host(SSL* ssl, const char* hostname)
    long SSL_get_verify_result(const SSL* ssl)
    ctypedef struct X509_VERIFY_PARAM
    X509_VERIFY_PARAM* SSL_get0_param(SSL* ssl)
    SSL_CTX* SSL_CTX_new(const SSL_METHOD* method)
    void SSL_CTX_free(SSL_CTX* ctx)
    long SSL_CTX_set_options(SSL_CTX* ctx, long options)
    long SSL_CTX_set_mode(SSL_CTX* ctx, long mode)
    int SSL_CTX_set_min_proto_version(SSL_CTX* ctx, int version)
    int SSL_CTX_set_cipher_list(SSL_CTX* ctx, const char* s)
    int SSL_CTX_use_certificate_chain_file(SSL_CTX* ctx, const char* file)
    int SSL_CTX_use_PrivateKey_file(SSL_CTX* ctx, const char* file, int kind)
    int SSL_CTX_check_private_key(const SSL_CTX* ctx)
    ctypedef int (*alpn_select_cb)(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                                   const unsigned char* inp, unsigned int inlen, void* arg)
    void SSL_CTX_set_alpn_select_cb(SSL_CTX* ctx, alpn_select_cb cb, void* arg)
    int SSL_select_next_proto(unsigned char** out, unsigned char* outlen,
                              const unsigned char* server, unsigned int server_len,
                              const unsigned char* client, unsigned int client_len)

    SSL* SSL_new(SSL_CTX* ctx)
    void SSL_free(SSL* ssl)
    void SSL_set_accept_state(SSL* ssl)
    void SSL_set_bio(SSL* ssl, BIO* rbio, BIO* wbio)
    int SSL_do_handshake(SSL* ssl)
    int SSL_read(SSL* ssl, void* buf, int num)
    int SSL_write(SSL* ssl, const void* buf, int num)
    int SSL_shutdown(SSL* ssl)
    int SSL_get_error(const SSL* ssl, int ret)
    int SSL_is_init_finished(const SSL* ssl)
    const char* SSL_get_version(const SSL* ssl)
    const SSL_CIPHER* SSL_get_current_cipher(const SSL* ssl)
    const char* SSL_CIPHER_get_name(const SSL_CIPHER* cipher)
    int SSL_CIPHER_get_bits(const SSL_CIPHER* cipher, int* alg_bits)
    void SSL_get0_alpn_selected(const SSL* ssl, const unsigned char** data, unsigned int* len)

    int SSL_ERROR_NONE, SSL_ERROR_SSL, SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE
    int SSL_ERROR_SYSCALL, SSL_ERROR_ZERO_RETURN
    int SSL_FILETYPE_PEM
    int TLS1_2_VERSION
    long SSL_OP_NO_COMPRESSION, SSL_OP_CIPHER_SERVER_PREFERENCE, SSL_OP_NO_RENEGOTIATION
    long SSL_OP_SINGLE_ECDH_USE, SSL_OP_SINGLE_DH_USE
    long SSL_MODE_RELEASE_BUFFERS
    int SSL_TLSEXT_ERR_OK, SSL_TLSEXT_ERR_NOACK
    int OPENSSL_NPN_NEGOTIATED


cdef extern from "openssl/ssl.h":
    # (called inside SSL_read / SSL_do_handshake, which run with the GIL held)
    ctypedef int (*new_session_cb)(SSL* ssl, SSL_SESSION* session) noexcept
    void SSL_CTX_sess_set_new_cb(SSL_CTX* ctx, new_session_cb cb)


cdef extern from "openssl/bio.h" nogil:
    const BIO_METHOD* BIO_s_mem()
    BIO* BIO_new(const BIO_METHOD* kind)
    int BIO_free(BIO* bio)
    int BIO_read(BIO* bio, void* data, int dlen)
    int BIO_write(BIO* bio, const void* data, int dlen)
    size_t BIO_ctrl_pending(BIO* bio)
    long BIO_set_mem_eof_return(BIO* bio, int v)


cdef extern from "openssl/x509_vfy.h" nogil:
    int X509_VERIFY_PARAM_set1_ip_asc(X509_VERIFY_PARAM* param, const char* ipasc)
    const char* X509_verify_cert_error_string(long n)
    int X509_V_OK


cdef extern from "openssl/err.h" nogil:
    unsigned long ERR_get_error()
    void ERR_clear_error()
    void ERR_error_string_n(unsigned long e, char* buf, size_t len)


cdef extern from "unistd.h" nogil:
    ssize_t c_write "write" (int fd, const void* buf, size_t count)


cdef extern from "errno.h" nogil:
    int errno
    int EINTR


cdef enum:
    _READ_SIZE = 65536  # plaintext handed up per data_received at most (4 full records)
    _WRITE_SIZE = 65536  # ciphertext taken from the BIO per write at most


# What ssl.create_default_context(Purpose.CLIENT_AUTH) allows for TLS 1.2 (CPython's
# PY_SSL_DEFAULT_CIPHER_STRING); TLS 1.3's suites are OpenSSL's defaults, as there.
cdef const char* _CIPHERS = b"@SECLEVEL=2:ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES:!aNULL:!eNULL:!aDSS:!SHA1:!AESCCM"
cdef const unsigned char* _ALPN = <const unsigned char*>b"\x08http/1.1"
cdef unsigned char _read_buffer[_READ_SIZE]  # one per process: filled and copied under the GIL


cdef int _select_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                      const unsigned char* inp, unsigned int inlen, void* arg) noexcept nogil:
    """http/1.1 when the client offers it; otherwise no ALPN (as CPython's server does)."""
    if SSL_select_next_proto(<unsigned char**>out, outlen, _ALPN, 9, inp, inlen) != OPENSSL_NPN_NEGOTIATED:
        return SSL_TLSEXT_ERR_NOACK
    return SSL_TLSEXT_ERR_OK


cdef object _unusable(str message):
    """The ssl.SSLError ssl.SSLContext.load_cert_chain would raise: with `reason` (the
    gateway shows it, pointing at the listener's tls key) and a plain str()."""
    exc = SSLError(1, message)
    exc.reason = message
    return exc


cdef str _ssl_error(str what):
    """`what`, with OpenSSL's queued errors (the queue is emptied)."""
    cdef char buf[256]
    cdef unsigned long code
    reasons = []
    while True:
        code = ERR_get_error()
        if code == 0:
            break
        ERR_error_string_n(code, buf, sizeof(buf))
        reasons.append(buf.decode("ascii", "replace"))
    return f"{what}: {'; '.join(reasons)}" if reasons else what


@cython.final
cdef class TlsContext:
    """A server certificate and key, and the protocol settings of every connection.
    An unusable file raises ssl.SSLError, as ssl.SSLContext.load_cert_chain does (the
    gateway names the listener's key to fix)."""

    cdef SSL_CTX* ctx

    def __cinit__(self, str cert, str key):
        self.ctx = SSL_CTX_new(TLS_server_method())
        if self.ctx == NULL:
            raise MemoryError(_ssl_error("SSL_CTX_new"))
        SSL_CTX_set_min_proto_version(self.ctx, TLS1_2_VERSION)
        SSL_CTX_set_options(
            self.ctx,
            SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION
            | SSL_OP_SINGLE_ECDH_USE | SSL_OP_SINGLE_DH_USE,
        )
        # An idle keep-alive connection (or an idle event stream) holds no 34 KB of
        # record buffers; nginx sets the same.
        SSL_CTX_set_mode(self.ctx, SSL_MODE_RELEASE_BUFFERS)
        if SSL_CTX_set_cipher_list(self.ctx, _CIPHERS) != 1:
            raise _unusable(_ssl_error("the cipher list"))
        if SSL_CTX_use_certificate_chain_file(self.ctx, cert.encode()) != 1:
            raise _unusable(_ssl_error(f"the certificate {cert}"))
        if SSL_CTX_use_PrivateKey_file(self.ctx, key.encode(), SSL_FILETYPE_PEM) != 1:
            raise _unusable(_ssl_error(f"the key {key}"))
        if SSL_CTX_check_private_key(self.ctx) != 1:
            raise _unusable(_ssl_error(f"the key {key} does not match the certificate {cert}"))
        SSL_CTX_set_alpn_select_cb(self.ctx, _select_alpn, NULL)

    def __dealloc__(self):
        if self.ctx != NULL:
            SSL_CTX_free(self.ctx)
            self.ctx = NULL


@cython.final
cdef class TlsClientContext:
    """What the gateway's TLS connections to upstreams share: the system's trusted CAs
    (OpenSSL's default paths; SSL_CERT_FILE / SSL_CERT_DIR as with the ssl module),
    the peer's certificate and name checked, TLS 1.2 at least, the ciphers of
    ssl.create_default_context()."""

    cdef SSL_CTX* ctx
    # The last session the upstream gave (a TLS 1.3 ticket, or a 1.2 session): the next
    # connection resumes it, as nginx does (proxy_ssl_session_reuse): no certificate
    # check nor key exchange of a full handshake when the pool opens a connection.
    cdef SSL_SESSION* session

    def __cinit__(self):
        self.ctx = SSL_CTX_new(TLS_client_method())
        if self.ctx == NULL:
            raise MemoryError(_ssl_error("SSL_CTX_new"))
        SSL_CTX_set_app_data(self.ctx, <void*>self)  # (the context outlives its SSLs)
        SSL_CTX_set_session_cache_mode(
            self.ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE
        )
        SSL_CTX_sess_set_new_cb(self.ctx, _new_session)
        SSL_CTX_set_min_proto_version(self.ctx, TLS1_2_VERSION)
        SSL_CTX_set_options(self.ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION)
        SSL_CTX_set_mode(self.ctx, SSL_MODE_RELEASE_BUFFERS)
        if SSL_CTX_set_cipher_list(self.ctx, _CIPHERS) != 1:
            raise _unusable(_ssl_error("the cipher list"))
        SSL_CTX_set_default_verify_paths(self.ctx)
        ERR_clear_error()  # (a missing default CA directory is not an error here)
        SSL_CTX_set_verify(self.ctx, SSL_VERIFY_PEER, NULL)

    def __dealloc__(self):
        if self.session != NULL:
            SSL_SESSION_free(self.session)
            self.session = NULL
        if self.ctx != NULL:
            SSL_CTX_set_app_data(self.ctx, NULL)
            SSL_CTX_free(self.ctx)
            self.ctx = NULL

    def sessions_resumed(self):
        """How many connections resumed a session (for tests)."""
        return self.resumed

    cdef long resumed


cdef int _new_session(SSL* ssl, SSL_SESSION* session) noexcept:
    """OpenSSL's: a session to resume later. Kept (returning 1 keeps OpenSSL's reference)
    in place of the last one, for this context's next connection."""
    cdef void* owner = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl))
    cdef TlsClientContext context
    if owner == NULL or not SSL_SESSION_is_resumable(session):
        return 0
    context = <TlsClientContext>owner
    if context.session != NULL:
        SSL_SESSION_free(context.session)
    context.session = session
    return 1


def connect_to(TlsClientContext context, app, str host):
    """The TCP transport's protocol for a TLS connection to `host` (its certificate must
    name it: a DNS name, or an IP address), carrying `app`. Await its `handshake()`
    before using `app`: it raises ssl.SSLError when the upstream is not trusted."""
    cdef TlsConnection conn = TlsConnection.__new__(TlsConnection, None, app, 0.0)
    conn._client(context, host)
    return conn


cdef class TlsConnection:
    """The TCP transport's protocol, and the transport of `app` (the connection's
    protocol): ciphertext below, plaintext above."""

    cdef SSL* ssl
    cdef BIO* rbio  # ciphertext read, for OpenSSL to decrypt (owned by ssl)
    cdef BIO* wbio  # ciphertext OpenSSL wrote, to be sent (owned by ssl)
    cdef object app
    cdef object transport  # the TCP one
    cdef object loop
    cdef int fd  # the TCP transport's socket, written directly while it queues nothing
    cdef bint queued  # bytes were given to the TCP transport since it was last empty
    cdef bint connected  # the handshake is done and app.connection_made was called
    cdef bint closing  # close() or abort() called, or the connection is gone
    cdef bint app_paused  # app.pause_reading(): plaintext is not handed up
    cdef bint app_eof  # app.eof_received() was called (once, whichever end came first)
    cdef bint reading_scheduled
    cdef object timer  # the handshake's deadline
    cdef double handshake_timeout
    cdef bint is_client  # connect_to's: the handshake starts at connection_made
    cdef TlsClientContext client_context
    cdef object done  # a future: the handshake's end, made when one awaits it
    cdef object failure  # why the handshake failed, for a handshake() awaited later

    def __cinit__(self, TlsContext context, app, double handshake_timeout=60.0):
        # (context None: a client connection, whose SSL connect_to makes)
        self.app = app
        self.fd = -1
        self.handshake_timeout = handshake_timeout
        if context is None:
            return
        self.ssl = SSL_new(context.ctx)
        if self.ssl == NULL:
            raise MemoryError(_ssl_error("SSL_new"))
        self._bios()
        SSL_set_accept_state(self.ssl)

    cdef _client(self, TlsClientContext context, str host):
        cdef bytes name = host.strip("[]").encode("ascii")
        self.ssl = SSL_new(context.ctx)
        if self.ssl == NULL:
            raise MemoryError(_ssl_error("SSL_new"))
        self._bios()
        SSL_set_connect_state(self.ssl)
        self.is_client = True
        self.client_context = context
        if context.session != NULL:
            SSL_set_session(self.ssl, context.session)  # (OpenSSL takes its own reference)
        if _is_ip(host):
            if X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(self.ssl), name) != 1:
                raise _unusable(_ssl_error(f"the address {host}"))
        else:
            SSL_set_tlsext_host_name(self.ssl, name)  # SNI: only for names
            if SSL_set1_host(self.ssl, name) != 1:
                raise _unusable(_ssl_error(f"the name {host}"))

    cdef _bios(self):
        self.rbio = BIO_new(BIO_s_mem())
        self.wbio = BIO_new(BIO_s_mem())
        if self.rbio == NULL or self.wbio == NULL:
            if self.rbio != NULL:
                BIO_free(self.rbio)
            if self.wbio != NULL:
                BIO_free(self.wbio)
            SSL_free(self.ssl)
            self.ssl = NULL
            raise MemoryError("BIO_new")
        # An empty read BIO means "wait for more", not end of stream.
        BIO_set_mem_eof_return(self.rbio, -1)
        SSL_set_bio(self.ssl, self.rbio, self.wbio)

    def __dealloc__(self):
        if self.ssl != NULL:
            SSL_free(self.ssl)  # frees both BIOs
            self.ssl = NULL

    # -- the TCP transport's protocol -----------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.loop = _running_loop()
        self.fd = _plain_fd(transport)
        if self.handshake_timeout > 0:
            self.timer = self.loop.call_later(self.handshake_timeout, self._handshake_late)
        if self.is_client:
            self._handshake()  # the ClientHello

    def data_received(self, bytes data):
        if self.closing or self.ssl == NULL:
            return
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        if n and BIO_write(self.rbio, PyBytes_AS_STRING(data), <int>n) != n:
            self._fail("the read buffer could not grow")
            return
        if not self.connected:
            self._handshake()
            if not self.connected:
                return
        self._read()

    def eof_received(self):
        if not self.connected or self.closing:
            self._close_tcp()
            return None
        # The client half-closed TCP without a close_notify. uvloop's TLS transport
        # closes then; this hands it up as the plain path does, so that answers in
        # flight are still written (the app ends the connection when they are).
        if not self._app_eof():
            self.close()
        return True  # (the TCP side stays open for writing until close())

    def connection_lost(self, exc):
        self.closing = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.connected:
            self._handshake_failed(
                exc if exc is not None else ConnectionResetError("closed during the TLS handshake")
            )
        self.fd = -1
        if self.connected:
            self.connected = False
            self.app.connection_lost(exc)
        self.transport = None
        self.app = None

    def pause_writing(self):
        if self.connected:
            self.app.pause_writing()

    def resume_writing(self):
        if self.connected:
            self.app.resume_writing()

    # -- the app's transport ----------------------------------------------------------

    def write(self, data):
        cdef bytes piece = data if type(data) is bytes else bytes(data)
        self._write(PyBytes_AS_STRING(piece), PyBytes_GET_SIZE(piece))

    def writelines(self, lines):
        self.write(b"".join(lines))

    def can_write_eof(self):
        return False  # a TLS stream has no half-close (close_notify ends both ways)

    def write_eof(self):
        raise NotImplementedError("a TLS connection can not be half-closed")

    def get_write_buffer_size(self):
        transport = self.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def set_write_buffer_limits(self, high=None, low=None):
        if self.transport is not None:
            self.transport.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self):
        return self.transport.get_write_buffer_limits() if self.transport is not None else (0, 0)

    def pause_reading(self):
        if self.app_paused:
            return
        self.app_paused = True
        if self.transport is not None and not self.closing:
            self.transport.pause_reading()

    def resume_reading(self):
        if not self.app_paused:
            return
        self.app_paused = False
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()
            # Records already read (or decrypted) are handed up without waiting for
            # the client to send more.
            if not self.reading_scheduled:
                self.reading_scheduled = True
                self.loop.call_soon(self._read_later)

    def is_reading(self):
        return not self.app_paused and not self.closing

    def is_closing(self):
        return self.closing

    def close(self):
        """close_notify, then the TCP connection closes once what is queued is sent."""
        if self.closing:
            return
        self.closing = True
        if self.ssl != NULL and self.connected:
            SSL_shutdown(self.ssl)  # once: we do not wait for the client's (as nginx)
            ERR_clear_error()
            self._flush()
        self._close_tcp()

    def abort(self):
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def get_extra_info(self, str name, default=None):
        if name == "ssl_version" or name == "tls_version":
            return SSL_get_version(self.ssl).decode() if self.ssl != NULL else default
        if name == "cipher":
            return self._cipher() if self.ssl != NULL else default
        if name == "alpn_protocol":
            return self._alpn() if self.ssl != NULL else default
        transport = self.transport
        return transport.get_extra_info(name, default) if transport is not None else default

    def get_protocol(self):
        return self.app

    def set_protocol(self, protocol):
        self.app = protocol

    # -- inside ---------------------------------------------------------------------

    cdef _handshake(self):
        cdef int ret = SSL_do_handshake(self.ssl)
        cdef int err
        self._flush()  # the server's flight, or an alert
        if ret == 1:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.connected = True
            if self.client_context is not None and SSL_session_reused(self.ssl):
                self.client_context.resumed += 1
            self.app.connection_made(self)
            if self.done is not None and not self.done.done():
                self.done.set_result(None)
            return
        err = SSL_get_error(self.ssl, ret)
        if err == SSL_ERROR_WANT_READ:
            return
        # Not TLS, or nothing we share, or (to an upstream) a certificate we do not
        # trust: the peer got the alert; nothing went up.
        cdef long verify = SSL_get_verify_result(self.ssl) if self.is_client else X509_V_OK
        why = _ssl_error("TLS handshake failed")
        if verify != X509_V_OK:
            why = "certificate verify failed: " + X509_verify_cert_error_string(verify).decode()
        _log.debug("%s", why)
        self._handshake_failed(_unusable(why))
        self._close_tcp()

    cdef _handshake_failed(self, exc):
        if self.failure is None:
            self.failure = exc
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc)

    async def handshake(self):
        """Returns once the handshake is done (the app was given this transport);
        raises ssl.SSLError (or OSError) when it failed."""
        if self.connected:
            return
        if self.failure is not None:
            self.abort()
            raise self.failure
        if self.done is None:
            self.done = _running_loop().create_future()
        try:
            await self.done
        except BaseException:
            self.abort()
            raise

    def _handshake_late(self):
        self.timer = None
        if not self.connected and not self.closing:
            _log.debug("TLS handshake not done in %.0f s: closed", self.handshake_timeout)
            self._handshake_failed(TimeoutError("the TLS handshake did not end in time"))
            self.closing = True
            if self.transport is not None:
                self.transport.abort()

    def _read_later(self):
        self.reading_scheduled = False
        if self.connected and not self.closing:
            self._read()

    cdef _read(self):
        """Hand up what the records read decrypt to, until OpenSSL wants more bytes."""
        cdef int n, err
        cdef Py_ssize_t filled
        while self.connected and not self.closing and not self.app_paused:
            filled = 0
            err = SSL_ERROR_NONE
            while filled < _READ_SIZE:
                n = SSL_read(self.ssl, _read_buffer + filled, <int>(_READ_SIZE - filled))
                if n <= 0:
                    err = SSL_get_error(self.ssl, n)
                    break
                filled += n
            if filled:
                self.app.data_received(PyBytes_FromStringAndSize(<char*>_read_buffer, filled))
            if err == SSL_ERROR_NONE:
                continue  # the buffer was full: more may be there
            if BIO_ctrl_pending(self.wbio):
                self._flush()  # TLS 1.3 post-handshake messages (a KeyUpdate's answer)
            if err == SSL_ERROR_WANT_READ:
                return
            if err == SSL_ERROR_ZERO_RETURN:  # the client's close_notify
                ERR_clear_error()
                if self.connected and not self.closing and not self._app_eof():
                    self.close()
                return
            self._fail(_ssl_error("TLS read failed"))
            return

    cdef _write(self, const char* data, Py_ssize_t size):
        cdef int n
        if self.closing or not self.connected or size == 0:
            return
        while size > 0:
            # A memory BIO takes it all: SSL_write returns the whole piece (records of
            # up to 16 KB each), or an error.
            n = SSL_write(self.ssl, data, <int>(size if size < 0x40000000 else 0x40000000))
            if n <= 0:
                self._fail(_ssl_error("TLS write failed"))
                return
            data += n
            size -= n
        self._flush()

    cdef _flush(self):
        """The ciphertext OpenSSL wrote, on the socket while the TCP transport queues
        nothing (a write() there is what its own write would do), else queued on it."""
        cdef size_t pending = BIO_ctrl_pending(self.wbio)
        cdef bytes out
        cdef Py_ssize_t sent
        cdef int n
        transport = self.transport
        while pending and transport is not None:
            n = <int>(pending if pending < _WRITE_SIZE else _WRITE_SIZE)
            out = PyBytes_FromStringAndSize(NULL, n)
            n = BIO_read(self.wbio, PyBytes_AS_STRING(out), n)
            if n <= 0:
                return
            if n != PyBytes_GET_SIZE(out):
                out = out[:n]
            pending = BIO_ctrl_pending(self.wbio)
            if self.fd >= 0 and (not self.queued or not transport.get_write_buffer_size()):
                self.queued = False
                while True:
                    sent = c_write(self.fd, PyBytes_AS_STRING(out), n)
                    if sent >= 0 or errno != EINTR:
                        break
                if sent == n:
                    continue
                if sent < 0:
                    sent = 0  # EAGAIN, or an error the transport meets again and reports
                out = out[sent:]
            transport.write(out)
            self.queued = True

    cdef bint _app_eof(self) except -1:
        """app.eof_received(), once: True when the app keeps the connection open."""
        if self.app_eof:
            return True  # it was told; it closes when it is done
        self.app_eof = True
        return bool(self.app.eof_received())

    cdef _close_tcp(self):
        self.closing = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.close()

    cdef _fail(self, str why):
        _log.debug("%s", why)
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    cdef _cipher(self):
        cdef const SSL_CIPHER* cipher = SSL_get_current_cipher(self.ssl)
        cdef int bits = 0
        if cipher == NULL:
            return None
        SSL_CIPHER_get_bits(cipher, &bits)
        return (SSL_CIPHER_get_name(cipher).decode(), SSL_get_version(self.ssl).decode(), bits)

    cdef _alpn(self):
        cdef const unsigned char* data = NULL
        cdef unsigned int size = 0
        SSL_get0_alpn_selected(self.ssl, &data, &size)
        return (<const char*>data)[:size].decode("ascii") if size else None


cdef object _running_loop():
    import asyncio

    return asyncio.get_running_loop()


def _plain_transport_types():
    import asyncio.selector_events

    types = [asyncio.selector_events._SelectorSocketTransport]
    try:
        from uvloop.loop import TCPTransport

        types.append(TCPTransport)
    except ImportError:  # uvloop is optional (tests run on asyncio's loop too)
        pass
    return tuple(types)


cdef tuple _PLAIN_TRANSPORTS = _plain_transport_types()


cdef int _plain_fd(transport):
    """The socket of uvloop's (or asyncio's) plain TCP transport, else -1: ciphertext is
    written on it directly only while the transport holds nothing (the order kept),
    as the data plane's send_out does for plain connections."""
    if type(transport) not in _PLAIN_TRANSPORTS:
        return -1
    sock = transport.get_extra_info("socket")
    if sock is None:
        return -1
    try:
        return sock.fileno()
    except (OSError, ValueError):
        return -1


cdef bint _is_ip(str host):
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
