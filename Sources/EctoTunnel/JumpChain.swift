import CEctoLinux
import EctoConfig
import EctoHostKeys
import EctoPlatform
import EctoSSH
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The jump hosts of a tunnel (`jump`, ssh's ProxyJump) as a chain of SSH sessions, all owned by
/// the tunnel's driver thread: hop 1 runs over the TCP connection the driver made, each further
/// hop (and finally the tunnel's own session) over a `direct-tcpip` channel of the hop before it.
///
/// libssh2 wants a socket for each session, so every channel is relayed through a socketpair: the
/// next session gets one end, the chain pumps the other to and from the channel (`pass`). Each hop
/// is a full session: its own host key check (known_hosts under the hop's own name and port), the
/// tunnel's authentication rules with the hop's user, keepalives and dead-peer detection. The
/// libssh2 rules of the driver's loop hold per session: a call that left a half-sent packet is
/// repeated before anything else on that session (`Hop.pending`), one channel open at a time, and
/// a channel write blocked only by the peer's window is not parked.
final class JumpChain {
    typealias Instant = BootInstant

    /// One jump host.
    final class Hop {
        enum Stage {
            case handshaking
            case authenticating(Authenticator)
            /// Opening the channel to the next hop (or the target).
            case opening
            case relaying(SSHChannel)
        }

        /// A libssh2 call to repeat first (it left part of a packet unsent).
        enum Pending { case open, read, write, keepalive }

        let index: Int
        let count: Int
        let target: SSHTarget
        /// Where this hop's channel goes: the next hop, or the tunnel's target.
        let next: SSHTarget
        /// The tunnel's configuration with this hop as its target (authentication and host keys).
        let config: TunnelConfig
        let session: SSHSession
        var stage: Stage = .handshaking
        var pending: Pending?
        /// The chain's end of the socketpair whose other end carries the next session.
        var relayFD: Int32 = -1
        /// Channel → relay bytes not yet written to `relayFD`, and relay → channel bytes not yet
        /// written to the channel.
        let toRelay = Chunk()
        let toChannel = Chunk()
        var relayWriteBlocked = false
        var nextKeepalive: Instant?
        var registeredSession: EpollEvents?
        var registeredRelay: EpollEvents?

        init(index: Int, count: Int, target: SSHTarget, next: SSHTarget, config: TunnelConfig, session: SSHSession) {
            self.index = index
            self.count = count
            self.target = target
            self.next = next
            self.config = config
            self.session = session
        }

        /// `hop 1/2 (ops@bastion:22)`: how messages and status name it.
        var name: String { "hop \(index + 1)/\(count) (\(target))" }
        var isRelaying: Bool { if case .relaying = stage { return true } else { return false } }
    }

    /// One direction's bytes in flight: filled by one read, emptied by writes. Its 64 KiB are
    /// allocated with the hop and kept (no allocation per read).
    final class Chunk {
        static let size = 64 * 1024
        private let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: Chunk.size, alignment: 16)
        private var start = 0
        private var end = 0

        deinit { storage.deallocate() }

        var isEmpty: Bool { start >= end }

        /// Reads into the (empty) chunk: `body` returns how many bytes it put there.
        func fill<E: Error>(_ body: (UnsafeMutableRawBufferPointer) throws(E) -> Int) throws(E) {
            precondition(isEmpty, "a chunk is filled only when empty")
            let n = try body(storage)
            start = 0
            end = n
        }

        /// The bytes not yet written on.
        var pending: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[start..<end]) }

        func consume(_ n: Int) {
            start += n
            if start >= end {
                start = 0
                end = 0
            }
        }
    }

    /// What a pass came to.
    enum Outcome {
        /// Still building or relaying; nothing for the driver to do.
        case working
        /// The last hop's channel to the target is open: run the tunnel's session on this socket
        /// (the driver's `SSHSession` owns it from now on).
        case ready(Int32)
        /// A hop failed: the attempt failed (while building) or the session is lost (while up).
        case failed(AttemptFailure, hop: String)
    }

    let hopTargets: [SSHTarget]
    let base: TunnelConfig
    let logger: Logger
    let clock = BootClock()
    private(set) var hops: [Hop] = []
    /// A pass moved bytes or changed a stage: run another without sleeping.
    var progress = false
    /// The last pass wrote bytes towards the tunnel's own session (its socket is readable now).
    var deliveredInward = false
    /// The index of the hop being built (the last one in `hops` until all relay).
    var building: Int { hops.count - 1 }
    var ready = false

    init(config: TunnelConfig, logger: Logger) {
        self.base = config
        self.hopTargets = config.jump
        self.logger = logger
    }

    /// Starts hop 1 on the TCP connection the driver made to it (`fd`): the hop's session owns it
    /// from here; when this throws, the caller still does.
    func start(tcp fd: Int32) throws(SSHError) {
        try addHop(socket: fd)
        progress = true
    }

    private func addHop(socket fd: Int32) throws(SSHError) {
        let index = hops.count
        let target = hopTargets[index]
        let next = index + 1 < hopTargets.count ? hopTargets[index + 1] : base.target
        var config = base
        config.target = target
        config.sshHostAlias = nil
        config.hostKeyFingerprint = nil  // the tunnel's pin is the target's key, not a hop's
        config.jump = []
        let session = try SSHSession(socket: fd)
        if let known = try? KnownHostsFile.load(path: config.knownHosts) {
            let preferred = known.knownAlgorithms(host: target.host, port: Int(target.port))
            if !preferred.isEmpty {
                let supported = session.supportedHostKeyAlgorithms
                try? session.preferHostKeyAlgorithms(
                    preferred.filter(supported.contains) + supported.filter { !preferred.contains($0) })
            }
        }
        hops.append(
            Hop(index: index, count: hopTargets.count, target: target, next: next, config: config, session: session))
        logger.debug("jump: connecting \(hops[index].name)")
    }

    /// Puts every relaying hop's next keepalive at `instant`, the end session's: the hops' rounds
    /// and the session's then share one timer wake-up instead of each waking the loop at its own
    /// phase (the driver calls it whenever it schedules its own keepalive).
    func alignKeepalives(to instant: Instant) {
        for hop in hops where hop.isRelaying && hop.nextKeepalive != nil {
            hop.nextKeepalive = instant
        }
    }

    /// The earliest keepalive or dead-peer deadline of the hops that relay.
    func nextDeadline() -> Instant? {
        var earliest: Instant?
        for hop in hops where hop.isRelaying {
            for candidate in [hop.nextKeepalive, deadPeerDeadline(hop)] {
                guard let candidate else { continue }
                earliest = earliest.map { min($0, candidate) } ?? candidate
            }
        }
        return earliest
    }

    private func deadPeerDeadline(_ hop: Hop) -> Instant? {
        guard base.keepaliveInterval > .zero else { return nil }
        let limit = base.keepaliveInterval * base.keepaliveCountMax
        return clock.now.advanced(by: limit - .nanoseconds(Int64(hop.session.nanosSinceLastReceive)))
    }

    /// Runs every hop once: the one being built advances its stage, the others relay.
    func pass() -> Outcome {
        progress = false
        deliveredInward = false
        for hop in hops {
            hop.session.beginPass()
            do {
                let outcome = try advance(hop)
                if case .working = outcome { continue }
                return outcome
            } catch let failure as HopFailure {
                return .failed(failure.failure, hop: hop.name)
            } catch {
                return .failed(AttemptFailure(.transport, "\(hop.name): \(error)"), hop: hop.name)
            }
        }
        return .working
    }

    private struct HopFailure: Error {
        var failure: AttemptFailure
    }

    /// Advances `hop` as far as it goes without waiting.
    private func advance(_ hop: Hop) throws -> Outcome {
        switch hop.stage {
        case .handshaking:
            let done: Bool
            do {
                if case .done = try hop.session.handshake() { done = true } else { done = false }
            } catch {
                throw HopFailure(failure: AttemptFailure(.transport, "\(hop.name): \(error.description)"))
            }
            guard done else { return .working }
            progress = true
            try verifyHostKey(hop)
            do {
                let authenticator = try Authenticator(
                    config: hop.config, environment: ProcessInfo.processInfo.environment, logger: logger)
                hop.stage = .authenticating(authenticator)
            } catch {
                throw HopFailure(failure: AttemptFailure(error.kind, "\(hop.name): \(error.message)"))
            }
            return try advance(hop)
        case .authenticating(let authenticator):
            do {
                guard try authenticator.advance(hop.session) else { return .working }
            } catch {
                throw HopFailure(failure: AttemptFailure(error.kind, "\(hop.name): \(error.message)"))
            }
            progress = true
            logger.info("jump: \(hop.name) authenticated; opening a channel to \(hop.next.host):\(hop.next.port)")
            hop.stage = .opening
            return try advance(hop)
        case .opening:
            let result: SSHResult<SSHChannel>
            do {
                hop.pending = nil
                result = try hop.session.openDirectTCPIP(
                    host: hop.next.host, port: hop.next.port, originHost: "127.0.0.1", originPort: 0)
            } catch {
                if error.isChannelScoped {
                    // AllowTcpForwarding no ("administratively prohibited"), or the next host
                    // refused or cannot be reached from this hop: the server's side, retried
                    // with backoff like an unreachable server.
                    throw HopFailure(
                        failure: AttemptFailure(
                            .transport,
                            "\(hop.name) refused to forward to \(hop.next.host):\(hop.next.port): \(error.message)"))
                }
                throw HopFailure(failure: AttemptFailure(.transport, "\(hop.name): \(error.description)"))
            }
            guard case .done(let channel) = result else {
                if hop.session.blockDirections.contains(.outbound) { hop.pending = .open }
                return .working
            }
            var ends: [Int32] = [-1, -1]
            let rc = ecto_socketpair(&ends, 1)
            guard rc == 0 else {
                throw HopFailure(
                    failure: AttemptFailure(.resources, "\(hop.name): socketpair: \(String(cString: strerror(rc)))"))
            }
            hop.relayFD = ends[0]
            hop.stage = .relaying(channel)
            if base.keepaliveInterval > .zero {
                hop.session.configureKeepalive(intervalSeconds: max(1, Int(base.keepaliveInterval.components.seconds)))
                hop.nextKeepalive = clock.now.advanced(by: base.keepaliveInterval)
            }
            progress = true
            if hop.index + 1 < hopTargets.count {
                do {
                    try addHop(socket: ends[1])
                } catch {
                    Glibc.close(ends[1])
                    throw HopFailure(failure: AttemptFailure(.transport, "\(hop.name): \(error.description)"))
                }
                return .working
            }
            ready = true
            return .ready(ends[1])
        case .relaying(let channel):
            try relay(hop, channel)
            return .working
        }
    }

    private func verifyHostKey(_ hop: Hop) throws {
        let key: HostKey
        let known: KnownHostsFile
        do {
            key = try hop.session.hostKey()
            known = try KnownHostsFile.load(path: hop.config.knownHosts)
        } catch {
            throw HopFailure(failure: AttemptFailure(.transport, "\(hop.name): \(error)"))
        }
        switch HostKeyVerifier.verify(key: key, config: hop.config, knownHosts: known) {
        case .trusted:
            return
        case .recordNew:
            do {
                try KnownHostsFile.append(
                    host: hop.target.host, port: Int(hop.target.port), key: key, to: hop.config.knownHosts)
            } catch {
                throw HopFailure(
                    failure: AttemptFailure(
                        .localTemporary,
                        "\(hop.name): cannot record the new host key in \(hop.config.knownHosts): \(error)"))
            }
            logger.warning(
                "permanently added jump host \(HostKeyVerifier.lookupName(hop.config)) (\(key.algorithm) \(key.fingerprintSHA256)) to \(hop.config.knownHosts) (host_key_policy = accept-new)"
            )
        case .refused(let message):
            throw HopFailure(failure: AttemptFailure(.hostKey, "\(hop.name): \(message)"))
        }
    }

    /// Moves bytes both ways between the hop's channel and its relay socket, then its keepalive
    /// and dead-peer checks. A call that left a half-sent packet goes first, and nothing else
    /// runs on the session until it completed.
    private func relay(_ hop: Hop, _ channel: SSHChannel) throws {
        let session = hop.session
        let pending = hop.pending
        hop.pending = nil
        switch pending {
        case .keepalive?:
            guard try keepalive(hop, force: true) else { return }
        case .write?:
            guard try pushToChannel(hop, channel) else { return }
        case .read?, .open?, nil:
            break
        }
        guard try pullFromChannel(hop, channel) else { return }
        guard try pushToChannel(hop, channel) else { return }
        guard try keepalive(hop) else { return }
        if let deadline = deadPeerDeadline(hop), clock.now >= deadline {
            let silence = Double(session.nanosSinceLastReceive) / 1e9
            throw HopFailure(
                failure: AttemptFailure(
                    .transport,
                    "\(hop.name): dead peer: nothing received for \(fixed(silence, decimals: 1)) s (keepalive \(base.keepaliveInterval) × \(base.keepaliveCountMax))"
                ))
        }
    }

    /// Channel → relay (towards the next session). False when a half-sent packet ends the pass.
    private func pullFromChannel(_ hop: Hop, _ channel: SSHChannel) throws -> Bool {
        var budget = 4 * Chunk.size
        while budget > 0 {
            if hop.toRelay.isEmpty {
                var result: SSHResult<Int> = .wouldBlock
                do {
                    try hop.toRelay.fill { buffer throws(SSHError) -> Int in
                        result = try channel.read(into: buffer)
                        if case .done(let n) = result { return n }
                        return 0
                    }
                } catch {
                    throw HopFailure(failure: AttemptFailure(.transport, "\(hop.name): \(error.description)"))
                }
                switch result {
                case .wouldBlock:
                    if hop.session.blockDirections.contains(.outbound) {
                        hop.pending = .read
                        return false
                    }
                case .done(let n):
                    if n == 0 && channel.isEOF {
                        throw HopFailure(
                            failure: AttemptFailure(
                                .transport, "\(hop.name) closed the connection to \(hop.next.host):\(hop.next.port)"))
                    }
                }
                if hop.toRelay.isEmpty { return true }
                progress = true
            }
            let written: IOResult<Int>
            do {
                written = try Posix.write(hop.relayFD, hop.toRelay.pending)
            } catch {
                throw HopFailure(failure: AttemptFailure(.transport, "\(hop.name): relay: \(error)"))
            }
            guard case .done(let n) = written else {
                hop.relayWriteBlocked = true
                return true
            }
            hop.relayWriteBlocked = false
            if n > 0 && hop.index == hop.count - 1 { deliveredInward = true }
            hop.toRelay.consume(n)
            budget -= n
        }
        progress = true  // budget spent with more to move
        return true
    }

    /// Relay → channel (from the next session). False when a half-sent packet ends the pass.
    private func pushToChannel(_ hop: Hop, _ channel: SSHChannel) throws -> Bool {
        var budget = 4 * Chunk.size
        while budget > 0 {
            if hop.toChannel.isEmpty {
                var read: IOResult<Int> = .wouldBlock
                do {
                    try hop.toChannel.fill { buffer throws(SystemError) -> Int in
                        read = try Posix.read(hop.relayFD, buffer)
                        if case .done(let n) = read { return n }
                        return 0
                    }
                } catch {
                    throw HopFailure(failure: AttemptFailure(.transport, "\(hop.name): relay: \(error)"))
                }
                guard case .done(let n) = read, n > 0 else {
                    if case .done = read {
                        // The next session's end closed: only when we tear it down.
                        throw HopFailure(failure: AttemptFailure(.transport, "\(hop.name): the relayed session ended"))
                    }
                    return true
                }
                progress = true
            }
            // A write blocked only by the peer's window is not parked: the window adjust
            // arrives with a read, and the socket's input wakes us for it.
            guard channel.writeWindow > 0 else { return true }
            let result: SSHResult<Int>
            do {
                result = try channel.write(hop.toChannel.pending)
            } catch {
                throw HopFailure(failure: AttemptFailure(.transport, "\(hop.name): \(error.description)"))
            }
            guard case .done(let n) = result else {
                if hop.session.blockDirections.contains(.outbound) {
                    hop.pending = .write
                    return false
                }
                return true
            }
            hop.toChannel.consume(n)
            budget -= n
            if n == 0 { return true }
        }
        progress = true
        return true
    }

    /// Sends the hop's keepalive when due (and the send queue has room; see the driver's rule 3).
    private func keepalive(_ hop: Hop, force: Bool = false) throws -> Bool {
        guard let next = hop.nextKeepalive, force || clock.now >= next else { return true }
        guard ecto_send_queue_room(hop.session.socket) >= 4096 else {
            hop.nextKeepalive = clock.now.advanced(by: .milliseconds(250))
            return true
        }
        let result: SSHResult<Int>
        do {
            result = try hop.session.sendKeepalive()
        } catch {
            throw HopFailure(failure: AttemptFailure(.transport, "\(hop.name): \(error.description)"))
        }
        switch result {
        case .wouldBlock:
            if hop.session.blockDirections.contains(.outbound) {
                hop.pending = .keepalive
                return false
            }
            return true
        case .done(let seconds):
            if hop.session.blockDirections.contains(.outbound) {
                throw HopFailure(
                    failure: AttemptFailure(
                        .transport, "\(hop.name): a keepalive was left half-sent (libssh2 1.10 limitation)"))
            }
            hop.nextKeepalive = clock.now.advanced(by: .seconds(max(1, seconds)))
            return true
        }
    }

    /// What each hop waits for, for epoll: its session socket (input while it may read, output
    /// while libssh2 holds a half-sent packet) and its relay socket (input while there is room,
    /// output while a write to it would block).
    func interest(of hop: Hop) -> (session: EpollEvents?, relay: EpollEvents?) {
        var sessionEvents: EpollEvents = hop.toRelay.isEmpty || !hop.isRelaying ? .input : []
        if hop.pending != nil || hop.session.blockDirections.contains(.outbound) { sessionEvents.insert(.output) }
        var relayEvents: EpollEvents = []
        if hop.relayFD >= 0 {
            if hop.toChannel.isEmpty { relayEvents.insert(.input) }
            if hop.relayWriteBlocked { relayEvents.insert(.output) }
        }
        return (
            sessionEvents.isEmpty ? nil : sessionEvents, hop.relayFD >= 0 && !relayEvents.isEmpty ? relayEvents : nil
        )
    }

    /// Ends every hop, the last first: sessions shut down (nothing waits on a peer), channels and
    /// sessions freed, relay sockets closed. `poller` forgets their descriptors first.
    func teardown(poller: Epoll?) {
        for hop in hops.reversed() {
            if hop.registeredSession != nil { poller?.remove(hop.session.socket) }
            if hop.registeredRelay != nil, hop.relayFD >= 0 { poller?.remove(hop.relayFD) }
            hop.registeredSession = nil
            hop.registeredRelay = nil
            hop.session.abandon()
            hop.stage = .handshaking  // drops the channel (freed before its session)
            if hop.relayFD >= 0 {
                Glibc.close(hop.relayFD)
                hop.relayFD = -1
            }
        }
        hops.removeAll()
    }
}
