// FFI round trip benchmark (a main, run by scripts/bench-mobile.sh): one
// HealthRecord.list() of 1,500 entries from Kotlin on the JVM through JNA
// into the release libsatchel_core and back as Kotlin objects (every
// entry's current resource JSON included). Prints min / median / p90.
package org.satchel.android

import java.nio.file.Files
import org.satchel.core.EntryQuery
import org.satchel.core.SatchelHome

const val BENCH_ENTRIES = 1_500

/** The same synthetic 1,500-entry record as core/benches/mobile.rs. */
fun benchResource(i: Int): String {
    val year = 2015 + i % 10
    val month = 1 + i % 12
    val day = 1 + i % 28
    val date = "%04d-%02d-%02d".format(year, month, day)
    return when (i % 4) {
        0 -> """{"resourceType":"MedicationStatement","status":"active","medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"${860975 + i}","display":"medicine $i 500 mg tablet"}]},"subject":{"reference":"Patient/p"},"effectiveDateTime":"$date"}"""
        1 -> """{"resourceType":"AllergyIntolerance","code":{"text":"allergen $i"},"recordedDate":"$date"}"""
        2 -> """{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"4548-4","display":"Hemoglobin A1c"}]},"effectiveDateTime":"$date","valueQuantity":{"value":${5 + i % 4}.${i % 10},"unit":"%"}}"""
        else -> """{"resourceType":"Condition","code":{"text":"condition $i"},"subject":{"reference":"Patient/p"},"onsetDateTime":"$date"}"""
    }
}

fun main() {
    val dir = Files.createTempDirectory("satchel-bench").toFile()
    try {
        val record = SatchelHome(dir.path, MapSecretStore()).createRecord("Bench")
        for (start in 0 until BENCH_ENTRIES step 100) {
            val batch = (start until start + 100).joinToString(",", "[", "]") { benchResource(it) }
            record.add(batch, null)
        }
        val query = EntryQuery()
        check(record.list(query).size == BENCH_ENTRIES)
        repeat(5) { record.list(query) }
        val runs = 30
        val ms = DoubleArray(runs) {
            val t = System.nanoTime()
            val list = record.list(query)
            val elapsed = (System.nanoTime() - t) / 1e6
            check(list.size == BENCH_ENTRIES)
            elapsed
        }.sorted()
        val bytes = record.list(query).sumOf { it.current.resourceJson.length }
        println(
            "kotlin list() of $BENCH_ENTRIES entries over FFI (JNA, release .so): " +
                "min %.2f ms, median %.2f ms, p90 %.2f ms over $runs runs (%d KiB of resource JSON)".format(
                    ms.first(), ms[runs / 2], ms[(runs * 9) / 10], bytes / 1024,
                ),
        )
        record.close()
    } finally {
        dir.deleteRecursively()
    }
}
