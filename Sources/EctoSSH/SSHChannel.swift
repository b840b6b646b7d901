import CLibSSH2

/// One libssh2 channel. Not `Sendable`: used only by the thread that owns its session. Keeps its
/// session alive; `free()` releases it (the session also frees any channel left when it goes).
public final class SSHChannel {
    let raw: OpaquePointer
    /// The session this channel belongs to (kept alive by the channel).
    public let session: SSHSession
    private(set) var isFreed = false

    init(raw: OpaquePointer, session: SSHSession) {
        self.raw = raw
        self.session = session
    }

    deinit {
        // Normally the owner called free(); otherwise try once. On EAGAIN the channel stays in the
        // session's list and is freed with the session.
        if !isFreed { _ = libssh2_channel_free(raw) }
    }

    /// Reads channel data into `buffer`. `.done(0)` means nothing is buffered right now if
    /// `isEOF` is false, or end of data if it is true.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SSHError) -> SSHResult<Int> {
        let n = ecto_channel_read(raw, buffer.baseAddress!.assumingMemoryBound(to: CChar.self), buffer.count)
        if n >= 0 { return .done(n) }
        if n == Int(LIBSSH2_ERROR_EAGAIN) { return .wouldBlock }
        throw session.lastError("read channel")
    }

    /// Writes channel data; returns how much was accepted (bounded by the peer's window).
    /// After `.wouldBlock` with `session.blockDirections` containing `.outbound`, the next libssh2
    /// call on this session must be this same write again.
    public func write(_ buffer: UnsafeRawBufferPointer) throws(SSHError) -> SSHResult<Int> {
        let n = ecto_channel_write(raw, buffer.baseAddress!.assumingMemoryBound(to: CChar.self), buffer.count)
        if n >= 0 { return .done(n) }
        if n == Int(LIBSSH2_ERROR_EAGAIN) { return .wouldBlock }
        throw session.lastError("write channel")
    }

    /// Bytes the peer lets us send right now (its window for this channel).
    public var writeWindow: Int { Int(ecto_channel_window_write(raw)) }

    /// True when the peer sent EOF (no more data will arrive once the buffered data is read).
    public var isEOF: Bool { libssh2_channel_eof(raw) != 0 }

    /// True when data for this channel is already buffered inside libssh2 (no syscall).
    public var hasBufferedData: Bool { libssh2_poll_channel_read(raw, 0) != 0 }

    /// True when a read would return something now: data buffered inside libssh2, or the end of
    /// data (EOF or close received). No syscall: a walk over libssh2's list of unread packets.
    public var hasInput: Bool { hasBufferedData || libssh2_channel_eof(raw) == 1 }

    /// The receive window the peer may still fill (bytes), as libssh2 counts it: lowered by what
    /// we read, raised by the window adjusts libssh2 sends from inside reads.
    public var readWindow: Int { Int(ecto_channel_window_read(raw)) }

    /// Lets libssh2 take in every packet the SSH socket holds, for all channels, without taking
    /// any data of this one: a read of 0 bytes runs libssh2's transport read and its
    /// window-adjust check, then copies nothing. After `.wouldBlock` with `session.blockDirections`
    /// containing `.outbound` (a window adjust or a reply half-sent), call it again first.
    public func receivePending() throws(SSHError) -> SSHResult<Void> {
        var unused: CChar = 0
        let n = ecto_channel_read(raw, &unused, 0)
        if n >= 0 { return .done(()) }
        if n == Int(LIBSSH2_ERROR_EAGAIN) { return .wouldBlock }
        throw session.lastError("read channel")
    }

    /// Sends EOF: we will write no more.
    public func sendEOF() throws(SSHError) -> SSHResult<Void> {
        try session.check(libssh2_channel_send_eof(raw), "send channel EOF")
    }

    /// Sends CHANNEL_CLOSE (once).
    public func close() throws(SSHError) -> SSHResult<Void> {
        try session.check(libssh2_channel_close(raw), "close channel")
    }

    /// Frees the channel; after `.done`, do not use it again.
    public func free() throws(SSHError) -> SSHResult<Void> {
        if isFreed { return .done(()) }
        let rc = libssh2_channel_free(raw)
        if rc == LIBSSH2_ERROR_EAGAIN { return .wouldBlock }
        isFreed = true
        if rc < 0 { throw session.lastError("free channel") }
        return .done(())
    }
}
