// Standalone build of the Satchel Android library (an app includes this
// directory as a module instead: include(":satchel"); project(":satchel").projectDir = file(".../android")).
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositories {
        google()
        mavenCentral()
    }
}
rootProject.name = "satchel-android"
