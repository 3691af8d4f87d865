// Staff pages: live inbox updates, the idle-logoff warning, the composer.
"use strict";
