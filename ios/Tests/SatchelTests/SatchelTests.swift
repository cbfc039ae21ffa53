// XCTest mirror of android/src/test/kotlin/org/satchel/android/SatchelTest.kt.
// Runs on a Mac (`swift test` in ios/ after scripts/build-ios.sh, with a
// relay: set SATCHEL_RELAY_URL to a running satchel-sync, e.g.
// `satchel-sync --listen 127.0.0.1:0 --db /tmp/relay.db`). Not compiled on
// this project's Linux CI (no Swift toolchain for Apple targets there).
import Foundation
import XCTest
@testable import Satchel

final class MapSecretStore: SecretStore, @unchecked Sendable {
    private let lock = NSLock()
    var items: [String: Data] = [:]
    func get(name: String) throws -> Data? { lock.lock(); defer { lock.unlock() }; return items[name] }
    func put(name: String, secret: Data) throws { lock.lock(); defer { lock.unlock() }; items[name] = secret }
    func delete(name: String) throws { lock.lock(); defer { lock.unlock() }; items[name] = nil }
}

func med(_ text: String) -> String {
    #"{"resourceType":"MedicationStatement","status":"active","medicationCodeableConcept":{"text":"\#(text)"},"subject":{"reference":"Patient/p"}}"#
}

func allergy(_ text: String) -> String {
    #"{"resourceType":"AllergyIntolerance","code":{"text":"\#(text)"},"recordedDate":"2021-03-04"}"#
}

final class SatchelTests: XCTestCase {
    var root: URL!
    var relayUrl: String { ProcessInfo.processInfo.environment["SATCHEL_RELAY_URL"] ?? "" }

    override func setUp() {
        root = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: root)
    }

    func home(_ name: String, _ keystore: SecretStore = MapSecretStore()) throws -> SatchelHome {
        try SatchelHome(dir: root.appendingPathComponent(name).path, keystore: keystore)
    }

    func testProfileWithTestSecretStoreAddsListsAmendsAndReopens() async throws {
        let keystore = MapSecretStore()
        let dir = root.appendingPathComponent("own").path
        let record = try await SatchelHome.open(dir: dir, keystore: keystore).createRecordAsync(ownerName: "Alex")
        XCTAssertEqual(keystore.items.count, 1)
        let added = try await record.addAsync("[\(med("metformin 500 mg")), \(allergy("penicillin"))]")
        XCTAssertEqual(added.map(\.section), ["medications", "allergies"])
        let meds = try await record.listAsync(EntryQuery(section: "medications"))
        XCTAssertEqual(meds.count, 1)
        let id = meds[0].id
        try await record.amendAsync(id: id, resourceJson: med("metformin 1000 mg"))
        XCTAssertEqual(try await record.historyAsync(id: id).count, 2)
        try await record.markEnteredInErrorAsync(id: id)
        XCTAssertEqual(try await record.listAsync().count, 1)
        let again = try SatchelHome(dir: dir, keystore: keystore).openRecord()
        XCTAssertEqual(try again.ownerName(), "Alex")
        XCTAssertEqual(try again.history(id: id).count, 3)
    }

    func testBadInputIsRefusedAsTypedErrorAndChangesNothing() throws {
        let record = try home("bad").createRecord(ownerName: "Bo")
        XCTAssertThrowsError(try record.add(resourcesJson: "[\(med("ok")), {\"resourceType\":\"Spaceship\"}]", sourceSystem: nil)) { error in
            guard case SatchelError.InvalidInput = error else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(try record.list(query: EntryQuery()).count, 0)
    }

    func testWrongKeySurfacesAsTypedSwiftError() throws {
        let keystore = MapSecretStore()
        let dir = root.appendingPathComponent("wrong").path
        _ = try SatchelHome(dir: dir, keystore: keystore).createRecord(ownerName: "Cy")
        let wrong = MapSecretStore()
        wrong.items[keystore.items.keys.first!] = Data(repeating: 7, count: 32)
        XCTAssertThrowsError(try SatchelHome(dir: dir, keystore: wrong).openRecord()) { error in
            XCTAssertEqual(error as? SatchelError, .WrongKey)
        }
        XCTAssertThrowsError(try SatchelHome(dir: dir, keystore: MapSecretStore()).openRecord()) { error in
            guard case SatchelError.Keystore = error else { return XCTFail("\(error)") }
        }
        XCTAssertNoThrow(try SatchelHome(dir: dir, keystore: keystore).openRecord())
    }

    func testTwoProfilesSyncThroughRelayAndConverge() async throws {
        try XCTSkipIf(relayUrl.isEmpty, "set SATCHEL_RELAY_URL")
        let a = try home("phone-a").createRecord(ownerName: "Dana")
        _ = try await a.addAsync(med("lisinopril"))
        let first = try await a.sync(relayUrl: relayUrl)
        XCTAssertEqual(first.uploaded, 1)
        let key = try await a.createRecoveryKey(relayUrl: relayUrl)
        let b = try await home("phone-b").restore(relayUrl: relayUrl, recoveryKey: key)
        XCTAssertEqual(try b.recordId(), try a.recordId())
        let heard = Task {
            for try await event in a.changes(relayUrl: relayUrl) {
                if case .sectionChanged(let section) = event, section == "allergies" { return section }
            }
            return ""
        }
        _ = try await b.addAsync(allergy("latex"))
        _ = try await b.sync(relayUrl: relayUrl)
        let section = try await heard.value
        XCTAssertEqual(section, "allergies")
        _ = try await a.sync(relayUrl: relayUrl)
        _ = try await b.sync(relayUrl: relayUrl)
        let idsA = try await a.listAsync().map(\.id).sorted()
        let idsB = try await b.listAsync().map(\.id).sorted()
        XCTAssertEqual(idsA.count, 2)
        XCTAssertEqual(idsA, idsB)
    }

    func testCarerInvitedAcceptedApprovedSeesOnlyGrantedSectionUntilRevoked() async throws {
        try XCTSkipIf(relayUrl.isEmpty, "set SATCHEL_RELAY_URL")
        let owner = try home("patient").createRecord(ownerName: "Eli")
        _ = try await owner.addAsync("[\(med("warfarin")), \(allergy("peanuts"))]")
        _ = try await owner.sync(relayUrl: relayUrl)
        let invite = try await owner.invite(
            relayUrl: relayUrl,
            terms: InviteTerms(role: .reader, sections: ["medications"], label: "daughter"),
            validForSecs: 3600)
        let carerHome = try home("carer")
        let me = try await carerHome.acceptInvite(code: invite.code, displayName: "Jane", kind: .carer)
        let answered = try await owner.invitee(relayUrl: relayUrl, inviteId: invite.inviteId)
        XCTAssertEqual(answered?.fingerprint, me.fingerprint)
        _ = try await owner.approve(relayUrl: relayUrl, inviteId: invite.inviteId, identity: answered!.identity)
        let shared = try await carerHome.awaitApproval(code: invite.code, timeoutMs: 30_000)
        XCTAssertEqual(try shared.readableSections(), ["medications"])
        XCTAssertEqual(try await shared.listAsync().map(\.section), ["medications"])
        XCTAssertThrowsError(try shared.add(resourcesJson: med("aspirin"), sourceSystem: nil)) { error in
            guard case SatchelError.NotAllowed = error else { return XCTFail("\(error)") }
        }
        try await owner.revoke(relayUrl: relayUrl, identity: me.identity, sections: nil)
        _ = try await owner.addAsync(med("new medicine"))
        _ = try await owner.sync(relayUrl: relayUrl)
        do {
            _ = try await shared.sync(relayUrl: relayUrl)
            XCTFail("a revoked carer must not sync")
        } catch SatchelError.NotAllowed {
        }
        XCTAssertEqual(try await shared.listAsync().count, 1)
    }
}
