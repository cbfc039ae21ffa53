// async/await over the generated bindings: network calls (sync, invite,
// approve, ...) are already `async throws`; the blocking record calls get
// async twins that run off the caller's actor, and a subscription becomes
// an AsyncThrowingStream.
import Foundation
@_exported import SatchelCore

private func offMain<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await Task.detached(priority: .userInitiated) { try body() }.value
}

public extension SatchelHome {
    static func open(dir: String, keystore: SecretStore) async throws -> SatchelHome {
        try await offMain { try SatchelHome(dir: dir, keystore: keystore) }
    }

    func createRecordAsync(ownerName: String) async throws -> HealthRecord {
        try await offMain { try self.createRecord(ownerName: ownerName) }
    }

    func openRecordAsync() async throws -> HealthRecord {
        try await offMain { try self.openRecord() }
    }
}

public extension HealthRecord {
    func listAsync(_ query: EntryQuery = EntryQuery()) async throws -> [EntryInfo] {
        try await offMain { try self.list(query: query) }
    }

    func addAsync(_ resourcesJson: String, sourceSystem: String? = nil) async throws -> [AddedEntry] {
        try await offMain { try self.add(resourcesJson: resourcesJson, sourceSystem: sourceSystem) }
    }

    func amendAsync(id: String, resourceJson: String) async throws {
        try await offMain { try self.amend(id: id, resourceJson: resourceJson) }
    }

    func markEnteredInErrorAsync(id: String) async throws {
        try await offMain { try self.markEnteredInError(id: id) }
    }

    func historyAsync(id: String) async throws -> [VersionInfo] {
        try await offMain { try self.history(id: id) }
    }

    /// Bind a direct-sync listener (and with `advertise`, start its mDNS
    /// advert) off the caller's actor; show its `code()`, then
    /// `try await listener.serve(timeoutMs:)`.
    func startNearbyListenAsync(bindAddress: String? = nil, advertise: Bool = false) async throws -> NearbyListener {
        try await offMain { try self.startNearbyListen(bindAddress: bindAddress, advertise: advertise) }
    }

    /// Background sync as a stream: iterating starts a subscription;
    /// cancelling the task stops it. Ends throwing the error that stopped it.
    func changes(relayUrl: String) -> AsyncThrowingStream<ChangeEvent, Error> {
        AsyncThrowingStream { continuation in
            final class Listener: ChangeListener, @unchecked Sendable {
                let continuation: AsyncThrowingStream<ChangeEvent, Error>.Continuation
                init(_ c: AsyncThrowingStream<ChangeEvent, Error>.Continuation) { continuation = c }
                func onChange(event: ChangeEvent) { continuation.yield(event) }
                func onStopped(error: SatchelError) { continuation.finish(throwing: error) }
            }
            do {
                let subscription = try self.subscribe(relayUrl: relayUrl, listener: Listener(continuation))
                continuation.onTermination = { _ in subscription.stop() }
            } catch {
                continuation.finish(throwing: error)
            }
        }
    }
}
